"""The routes of the subscriber pages. Module-level handlers on one ``APIRouter``; what they share (the
settings, signer, CSRF tokens, rate limiter, sessions) comes from the ``WebState`` dependency.

Every link token is verified with ``LinkSigner`` for its own purpose, and its link key must be the one
stored on the subscriber it names: a tampered, expired or foreign token, or the token of a removed
subscriber, gets a 400 page and changes nothing. No GET changes anything (mail link scanners follow every
link): a confirmation or a vote is the POST of the button on the page its link opens, with a CSRF token;
unsubscribing is a POST too (RFC 8058 one-click, the token alone authorises it). Forms carry a signed
CSRF token and POSTs from another origin are refused. The handlers change subscribers only through the
store's doors (``digest.store.subscribers``) and mail only through the outbox."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.cadence import max_papers_after
from digest.models import Subscriber, SubscriberStatus, normalise_arxiv_id
from digest.signing import CONFIRM_MAX_AGE, BadToken
from digest.store import outbox
from digest.store.feedback import record_feedback
from digest.store.papers import papers_by_ids
from digest.store.subscribers import (
    Preferences,
    SubscriberNotFoundError,
    confirm_subscriber,
    drop_feed_key,
    renew_feed_key,
    request_subscription,
    subscriber_for_link,
    unsubscribe_subscriber,
    update_preferences,
)
from digest.web import forms
from digest.web.pages import bad_link, message, page
from digest.web.security import CsrfError, check_same_origin, client_key
from digest.web.state import WebState

log = logging.getLogger(__name__)
router = APIRouter()


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


Web = Annotated[WebState, Depends(web_state)]
FORM_EXPIRED = "This form has expired or was not sent from this site."


def _check_form(web: Web, request: Request, csrf_token: str, form: str, subscriber_id: int | None = None) -> None:
    check_same_origin(web.settings.public_url, request.headers.get("origin"), request.headers.get("referer"))
    web.csrf.check(csrf_token, form, subscriber_id)


def _linked(session: Session, purpose: str, link: dict[str, Any]) -> Subscriber:
    """The subscriber a verified link names, if the link's key is still theirs; else ``BadToken``."""
    sub = subscriber_for_link(session, link["subscriber_id"], link["key"])
    if sub is None:
        raise BadToken(f"invalid {purpose} link")
    return sub


# -- subscribe ---------------------------------------------------------------------------------------


def _subscribe_form(web: WebState, values: dict[str, str] | None = None, status: int = 200,
                    error: str | None = None) -> HTMLResponse:
    values = values or {"email": "", "interests": "", "max_papers": "10"}
    return page("subscribe.html.j2", status, title="Subscribe - Papers Digest", values=values, error=error,
                csrf_token=web.csrf.token("subscribe"))


@router.get("/", response_class=HTMLResponse)
def subscribe_page(web: Web) -> HTMLResponse:
    return _subscribe_form(web)


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    background: BackgroundTasks,
    web: Web,
    email: Annotated[str, Form()] = "",
    interests: Annotated[str, Form()] = "",
    max_papers: Annotated[str, Form()] = "10",
    csrf_token: Annotated[str, Form()] = "",
) -> HTMLResponse:
    client = client_key(request.client.host if request.client else None, request.headers.get("x-forwarded-for"),
                        web.trusted_proxies)
    retry = web.limiter.hit(client)
    if retry is not None:
        resp = message(429, "Too many requests", "Too many requests",
                       "Too many sign-ups from your address. Please wait a minute and try again.")
        resp.headers["Retry-After"] = str(int(retry) + 1)
        return resp
    values = {"email": email[:400], "interests": interests[: forms.MAX_FIELD_CHARS], "max_papers": max_papers[:10]}
    try:
        _check_form(web, request, csrf_token, "subscribe")
    except CsrfError:
        return _subscribe_form(web, values, 403, f"{FORM_EXPIRED} Please check your entries and submit it again.")
    try:
        form = forms.SubscribeForm.parse(email, interests, max_papers)
    except forms.FormError as e:
        return _subscribe_form(web, values, 400, str(e))
    delivery: int | None = None
    try:
        with web.sessions.begin() as session:
            sid = request_subscription(session, form.email, form.interests, form.max_papers)
            if sid is not None:  # already active: nothing is sent, and the page says the same
                delivery = outbox.enqueue_confirmation(
                    session, sid, datetime.now(timezone.utc).date(),
                    min_interval=timedelta(hours=web.settings.confirm_interval_hours))
    except IntegrityError:  # the same address signed up at the same moment: that request mails it
        delivery = None
    if delivery is not None:
        background.add_task(web.send_confirmations, [delivery])
    # The same page whatever the address's state: the page never tells whether it was known.
    return message(200, "Check your inbox", "Check your inbox",
                   f"If {form.email} can receive mail, a confirmation link is on its way (one every "
                   f"{web.settings.confirm_interval_hours:g} hours at most: if one came lately, use that one). Follow it within {CONFIRM_MAX_AGE // 86400} days to "
                   "start receiving the digest.")


# -- confirm -----------------------------------------------------------------------------------------


def _stale(link: dict[str, Any], sub: Subscriber) -> bool:
    """A link issued before the subscriber's last change of status (seconds: what a token carries)."""
    changed = sub.status_changed_at
    if changed is None:
        return False
    changed = changed if changed.tzinfo else changed.replace(tzinfo=timezone.utc)
    return int(link["issued_at"]) < int(changed.timestamp())


def _subscribed(web: WebState, link: dict[str, Any]) -> HTMLResponse:
    return message(200, "Subscription confirmed", "You're subscribed",
                   "Your first digest arrives with the next daily run.",
                   web.signer.preferences_url(link["subscriber_id"], key=link["key"]), "Edit your preferences")


def _stale_page() -> HTMLResponse:
    return message(400, "Link out of date", "This link is out of date",
                   "Your subscription changed after this confirmation link was mailed (you unsubscribed, or mail "
                   "to you bounced), so it cannot start it again. To subscribe again, sign up again and use the "
                   "link in the new mail.", "/", "Sign up again")


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, web: Web) -> HTMLResponse:
    # GET never confirms (mail scanners follow links): the page's button POSTs.
    try:
        link = web.signer.verify("confirm", token, max_age=CONFIRM_MAX_AGE)
        with web.sessions() as session:
            sub = _linked(session, "confirm", link)
    except BadToken as e:
        return bad_link(e)
    if sub.status == SubscriberStatus.active:
        return _subscribed(web, link)
    if _stale(link, sub):
        return _stale_page()
    interests = sub.pending_interests if sub.pending_interests is not None else sub.interests
    max_papers = sub.pending_max_papers if sub.pending_max_papers is not None else sub.max_papers
    return page("confirm.html.j2", 200, title="Confirm your subscription - Papers Digest", email=sub.email,
                interests=interests, max_papers=max_papers, action=f"/confirm/{token}",
                csrf_token=web.csrf.token("confirm", link["subscriber_id"]))


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str, web: Web, background: BackgroundTasks,
            csrf_token: Annotated[str, Form()] = "") -> HTMLResponse:
    try:
        link = web.signer.verify("confirm", token, max_age=CONFIRM_MAX_AGE)
    except BadToken as e:
        return bad_link(e)
    with web.sessions.begin() as session:
        try:
            sub = _linked(session, "confirm", link)
        except BadToken as e:
            return bad_link(e)
        try:
            _check_form(web, request, csrf_token, "confirm", link["subscriber_id"])
        except CsrfError:
            return message(403, "Form expired", "Nothing was confirmed", f"{FORM_EXPIRED} Please open the "
                           "confirmation page again and press its button.", f"/confirm/{token}",
                           "Open the confirmation page")
        if sub.status == SubscriberStatus.active:  # pressed twice, or confirmed already: harmless
            return _subscribed(web, link)
        if _stale(link, sub):
            return _stale_page()
        confirmed = confirm_subscriber(session, link["subscriber_id"])
    if confirmed is not None:  # the interests they signed up with: cached for their first digest
        background.add_task(web.embed_interests, [*confirmed.interests, *confirmed.negative_interests])
    return _subscribed(web, link)


# -- unsubscribe -------------------------------------------------------------------------------------


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, web: Web) -> HTMLResponse:
    try:
        link = web.signer.verify("unsubscribe", token)
        with web.sessions() as session:
            _linked(session, "unsubscribe", link)
    except BadToken as e:
        return bad_link(e)
    # GET never unsubscribes (mail scanners follow links): the button POSTs, like RFC 8058 clients.
    return page("unsubscribe.html.j2", 200, title="Unsubscribe", action=f"/unsubscribe/{token}")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, web: Web) -> HTMLResponse:
    # RFC 8058 one-click: the signed token is the authorisation; no cookie, login or CSRF token.
    try:
        link = web.signer.verify("unsubscribe", token)
        with web.sessions.begin() as session:
            _linked(session, "unsubscribe", link)
            unsubscribe_subscriber(session, link["subscriber_id"])
    except BadToken as e:
        return bad_link(e)
    return message(200, "Unsubscribed", "You're unsubscribed",
                   "You will not receive the digest any more. Changed your mind? Sign up again at any time.",
                   "/", "Subscribe again")


# -- feedback ----------------------------------------------------------------------------------------


def _feedback_link(web: WebState, token: str) -> tuple[dict[str, Any], str, str]:
    """The verified feedback link and its paper and vote (from the token; the query is only for humans)."""
    data = web.signer.verify("feedback", token)
    paper, vote = data.get("p"), data.get("v")
    if not isinstance(paper, str) or vote not in ("up", "down"):
        raise BadToken("invalid feedback link")
    return data, paper, vote


NOT_FOUND = ("Not found", "Not found", "This paper or subscription no longer exists.")


@router.get("/feedback/{token}", response_class=HTMLResponse)
def feedback_page(token: str, web: Web) -> HTMLResponse:
    # GET never records a vote (mail scanners follow links): the page's button POSTs.
    try:
        data, paper_id, vote = _feedback_link(web, token)
        with web.sessions() as session:
            _linked(session, "feedback", data)
            paper = papers_by_ids(session, [paper_id]).get(normalise_arxiv_id(paper_id))
    except BadToken as e:
        return bad_link(e)
    if paper is None:
        return message(404, *NOT_FOUND)
    return page("feedback.html.j2", 200, title="Your feedback - Papers Digest", vote=vote, paper_title=paper.title,
                paper_id=paper.arxiv_id, action=f"/feedback/{token}",
                csrf_token=web.csrf.token("feedback", data["subscriber_id"]))


@router.post("/feedback/{token}", response_class=HTMLResponse)
def feedback(request: Request, token: str, web: Web, csrf_token: Annotated[str, Form()] = "") -> HTMLResponse:
    try:
        data, paper_id, vote = _feedback_link(web, token)
    except BadToken as e:
        return bad_link(e)
    sid = data["subscriber_id"]
    with web.sessions.begin() as session:
        try:
            _linked(session, "feedback", data)
        except BadToken as e:
            return bad_link(e)
        if not papers_by_ids(session, [paper_id]):
            return message(404, *NOT_FOUND)
        try:
            _check_form(web, request, csrf_token, "feedback", sid)
        except CsrfError:
            return message(403, "Form expired", "Nothing was recorded", f"{FORM_EXPIRED} Please open the link "
                           "from the mail again and press its button.")
        record_feedback(session, sid, paper_id, 1 if vote == "up" else -1)  # the same vote again changes nothing
    return message(200, "Thanks for your feedback", "Thanks!",
                   "You'll see more papers like this one." if vote == "up" else "You'll see fewer papers like this one.",
                   web.signer.preferences_url(sid, key=data["key"]), "Edit your preferences")


# -- preferences -------------------------------------------------------------------------------------


PREFS_EXPIRED = "This preferences link has expired. Use the one at the end of your latest digest: each mail brings a fresh one."


def _prefs_max_age(web: WebState) -> int:
    return web.settings.preferences_link_days * 86400


def _preferences_form(web: WebState, token: str, sub: Subscriber, status: int = 200, *,
                      error: str | None = None, notice: str | None = None,
                      feed_notice: str | None = None, feed_error: str | None = None) -> HTMLResponse:
    assert sub.id is not None and sub.link_key is not None
    sid, key = sub.id, sub.link_key
    prefs = Preferences(sub.interests, sub.negative_interests, sub.include_keywords, sub.exclude_keywords,
                        sub.max_papers, sub.frequency, sub.seed_papers, sub.weekday, sub.thumbnails,
                        sub.plain_text, sub.follow_orgs, sub.follow_authors, sub.only_with_code)
    return page("preferences.html.j2", status, title="Preferences - Papers Digest", email=sub.email,
                sub_status=sub.status.value, prefs=forms.preferences_values(prefs), frequencies=forms.FREQUENCIES,
                weekdays=list(zip(forms.WEEKDAYS, forms.WEEKDAY_NAMES)), lag_days=web.settings.lag_days,
                weekly_max_papers=web.settings.weekly_max_papers,
                action=f"/preferences/{token}",
                unsubscribe_action=f"/unsubscribe/{web.signer.token('unsubscribe', sid, key=key)}",
                csrf_token=web.csrf.token("preferences", sid), error=error, notice=notice,
                feed_url=web.signer.feed_url(sid, key=key, feed_key=sub.feed_key) if sub.feed_key else None,
                feed_action=f"/preferences/{token}/feed#feed", feed_notice=feed_notice,
                feed_error=feed_error, archive_url=web.signer.archive_url(sid, key=key))


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(token: str, web: Web) -> HTMLResponse:
    try:
        link = web.signer.verify("preferences", token, max_age=_prefs_max_age(web))
        with web.sessions() as session:
            sub = _linked(session, "preferences", link)
    except BadToken as e:
        return bad_link(e, PREFS_EXPIRED)
    return _preferences_form(web, token, sub)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences_save(
    request: Request,
    token: str,
    web: Web,
    background: BackgroundTasks,
    interests: Annotated[str, Form()] = "",
    negative_interests: Annotated[str, Form()] = "",
    include_keywords: Annotated[str, Form()] = "",
    exclude_keywords: Annotated[str, Form()] = "",
    max_papers: Annotated[str, Form()] = "",
    frequency: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    seed_papers: Annotated[str | None, Form()] = None,
    weekday: Annotated[str, Form()] = "",
    thumbnails: Annotated[str | None, Form()] = None,
    plain_text: Annotated[str | None, Form()] = None,
    follow_orgs: Annotated[str, Form()] = "",
    follow_authors: Annotated[str, Form()] = "",
    only_with_code: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    try:
        link = web.signer.verify("preferences", token, max_age=_prefs_max_age(web))
    except BadToken as e:
        return bad_link(e, PREFS_EXPIRED)
    sid = link["subscriber_id"]
    status, error = 200, None
    prefs: Preferences | None = None
    try:
        _check_form(web, request, csrf_token, "preferences", sid)
        parsed = forms.parse_preferences(interests, negative_interests, include_keywords, exclude_keywords,
                                         max_papers, frequency, seed_papers, weekday, thumbnails, plain_text,
                                         follow_orgs, follow_authors, only_with_code)
        if parsed.seed_papers:  # papers not stored yet are fetched from Hugging Face, or refused
            forms.resolve_seeds(web.sessions.kw["bind"], web.settings, parsed.seed_papers)
        prefs = parsed
    except CsrfError:
        status, error = 403, f"{FORM_EXPIRED} Nothing was saved: please try again."
    except forms.FormError as e:
        status, error = 400, f"{e}. Nothing was saved."
    except forms.SeedsUnavailable as e:
        status, error = 503, str(e)
    with web.sessions.begin() as session:
        try:
            sub = _linked(session, "preferences", link)
        except BadToken as e:
            return bad_link(e)
        if prefs is None:  # nothing written: the form shows the stored values again
            return _preferences_form(web, token, sub, status, error=error)
        # Papers per mail left as they were follow a change of cadence when they were its default.
        prefs = replace(prefs, max_papers=max_papers_after(sub.frequency, prefs.frequency, sub.max_papers,
                                                           prefs.max_papers, web.settings.weekly_max_papers))
        try:
            sub = update_preferences(session, sid, prefs)
        except SubscriberNotFoundError:
            return bad_link(BadToken("invalid preferences link"))
    # After the answer: the interests just written are encoded and cached for the next plan.
    background.add_task(web.embed_interests, [*sub.interests, *sub.negative_interests])
    return _preferences_form(web, token, sub, 200, notice="Your preferences are saved.")


@router.post("/preferences/{token}/feed", response_class=HTMLResponse)
def preferences_feed(request: Request, token: str, web: Web, feed: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "") -> HTMLResponse:
    """The feed buttons of the preferences page: ``renew`` (turn on, or a new URL) or ``off``. Either way
    the feed URL shown before stops working."""
    try:
        link = web.signer.verify("preferences", token, max_age=_prefs_max_age(web))
    except BadToken as e:
        return bad_link(e, PREFS_EXPIRED)
    sid = link["subscriber_id"]
    with web.sessions.begin() as session:
        try:
            sub = _linked(session, "preferences", link)
        except BadToken as e:
            return bad_link(e)
        try:
            _check_form(web, request, csrf_token, "preferences", sid)
        except CsrfError:
            return _preferences_form(web, token, sub, 403, feed_error=f"{FORM_EXPIRED} Your feed was not "
                                     "changed: please try again.")
        if feed == "renew":
            sub = renew_feed_key(session, sid)
            notice = "Your feed is on. Its address is below; any earlier feed address no longer works."
        elif feed == "off":
            sub = drop_feed_key(session, sid)
            notice = "Your feed is off: its address no longer works."
        else:
            return _preferences_form(web, token, sub, 400, feed_error="Unknown feed action. Nothing was changed.")
        return _preferences_form(web, token, sub, 200, feed_notice=notice)


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


__all__ = ["router", "web_state"]
