"""The routes of the subscriber pages. Module-level handlers on one ``APIRouter``; what they share (the
settings, signer, CSRF tokens, rate limiter, sessions) comes from the ``WebState`` dependency.

Every link token is verified with ``LinkSigner`` for its own purpose: a tampered, expired or foreign token
gets a 400 page and changes nothing. State-changing GETs are limited to following a link from a mail
(confirm, feedback); unsubscribing needs a POST (RFC 8058 one-click). Forms carry a signed CSRF token and
POSTs from another origin are refused. The handlers change subscribers only through the store's doors
(``digest.store.subscribers``) and mail only through the outbox."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.exc import IntegrityError

from digest.models import Subscriber
from digest.signing import CONFIRM_MAX_AGE, BadToken
from digest.store import outbox
from digest.store.feedback import record_feedback
from digest.store.subscribers import (
    Preferences,
    SubscriberNotFoundError,
    confirm_subscriber,
    find_subscriber,
    request_subscription,
    unsubscribe_subscriber,
    update_preferences,
)
from digest.web import forms
from digest.web.pages import bad_link, message, page
from digest.web.security import CsrfError, check_same_origin
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
    client = request.client.host if request.client else "unknown"
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
                delivery = outbox.enqueue_confirmation(session, sid, datetime.now(timezone.utc).date())
    except IntegrityError:  # the same address signed up at the same moment: that request mails it
        delivery = None
    if delivery is not None:
        background.add_task(web.send_confirmations, [delivery])
    # The same page whatever the address's state: the page never tells whether it was known.
    return message(200, "Check your inbox", "Check your inbox",
                   f"If {form.email} can receive mail, a confirmation link is on its way. "
                   f"Follow it within {CONFIRM_MAX_AGE // 86400} days to start receiving the digest.")


# -- confirm -----------------------------------------------------------------------------------------


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, web: Web) -> HTMLResponse:
    try:
        sid = web.signer.verify("confirm", token, max_age=CONFIRM_MAX_AGE)["subscriber_id"]
    except BadToken as e:
        return bad_link(e)
    with web.sessions.begin() as session:
        if confirm_subscriber(session, sid) is None:
            return bad_link(BadToken("invalid confirm link"))
    return message(200, "Subscription confirmed", "You're subscribed",
                   "Your first digest arrives with the next daily run.",
                   web.signer.preferences_url(sid), "Edit your preferences")


# -- unsubscribe -------------------------------------------------------------------------------------


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, web: Web) -> HTMLResponse:
    try:
        web.signer.verify("unsubscribe", token)
    except BadToken as e:
        return bad_link(e)
    # GET never unsubscribes (mail scanners follow links): the button POSTs, like RFC 8058 clients.
    return page("unsubscribe.html.j2", 200, title="Unsubscribe", action=f"/unsubscribe/{token}")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, web: Web) -> HTMLResponse:
    # RFC 8058 one-click: the signed token is the authorisation; no cookie, login or CSRF token.
    try:
        sid = web.signer.verify("unsubscribe", token)["subscriber_id"]
    except BadToken as e:
        return bad_link(e)
    with web.sessions.begin() as session:
        unsubscribe_subscriber(session, sid)
    return message(200, "Unsubscribed", "You're unsubscribed",
                   "You will not receive the digest any more. Changed your mind? Sign up again at any time.",
                   "/", "Subscribe again")


# -- feedback ----------------------------------------------------------------------------------------


@router.get("/feedback/{token}", response_class=HTMLResponse)
def feedback(token: str, web: Web) -> HTMLResponse:
    # paper and vote come from the signed token; the query string (?paper=&v=) is only for humans
    try:
        data = web.signer.verify("feedback", token)
        sid, paper, vote = data["subscriber_id"], data.get("p"), data.get("v")
        if not isinstance(paper, str) or vote not in ("up", "down"):
            raise BadToken("invalid feedback link")
    except BadToken as e:
        return bad_link(e)
    try:
        with web.sessions.begin() as session:
            if find_subscriber(session, sid) is None:
                raise LookupError(sid)
            record_feedback(session, sid, paper, 1 if vote == "up" else -1)
    except (LookupError, IntegrityError, ValueError):
        return message(404, "Not found", "Not found", "This paper or subscription no longer exists.")
    return message(200, "Thanks for your feedback", "Thanks!",
                   "You'll see more papers like this one." if vote == "up" else "You'll see fewer papers like this one.",
                   web.signer.preferences_url(sid), "Edit your preferences")


# -- preferences -------------------------------------------------------------------------------------


def _preferences_form(web: WebState, token: str, sub: Subscriber, status: int = 200, *,
                      error: str | None = None, notice: str | None = None) -> HTMLResponse:
    assert sub.id is not None
    prefs = Preferences(sub.interests, sub.negative_interests, sub.include_keywords, sub.exclude_keywords,
                        sub.max_papers, sub.frequency, sub.seed_papers)
    return page("preferences.html.j2", status, title="Preferences - Papers Digest", email=sub.email,
                sub_status=sub.status.value, prefs=forms.preferences_values(prefs), frequencies=forms.FREQUENCIES,
                action=f"/preferences/{token}",
                unsubscribe_action=f"/unsubscribe/{web.signer.token('unsubscribe', sub.id)}",
                csrf_token=web.csrf.token("preferences", sub.id), error=error, notice=notice)


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(token: str, web: Web) -> HTMLResponse:
    try:
        sid = web.signer.verify("preferences", token)["subscriber_id"]
    except BadToken as e:
        return bad_link(e)
    with web.sessions() as session:
        sub = find_subscriber(session, sid)
    if sub is None:
        return bad_link(BadToken("invalid preferences link"))
    return _preferences_form(web, token, sub)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences_save(
    request: Request,
    token: str,
    web: Web,
    interests: Annotated[str, Form()] = "",
    negative_interests: Annotated[str, Form()] = "",
    include_keywords: Annotated[str, Form()] = "",
    exclude_keywords: Annotated[str, Form()] = "",
    max_papers: Annotated[str, Form()] = "",
    frequency: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    seed_papers: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    try:
        sid = web.signer.verify("preferences", token)["subscriber_id"]
    except BadToken as e:
        return bad_link(e)
    status, error = 200, None
    prefs: Preferences | None = None
    try:
        _check_form(web, request, csrf_token, "preferences", sid)
        parsed = forms.parse_preferences(interests, negative_interests, include_keywords, exclude_keywords,
                                         max_papers, frequency, seed_papers)
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
        if prefs is None:  # nothing written: the form shows the stored values again
            sub = find_subscriber(session, sid)
            if sub is None:
                return bad_link(BadToken("invalid preferences link"))
            return _preferences_form(web, token, sub, status, error=error)
        try:
            sub = update_preferences(session, sid, prefs)
        except SubscriberNotFoundError:
            return bad_link(BadToken("invalid preferences link"))
        return _preferences_form(web, token, sub, 200, notice="Your preferences are saved.")


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


__all__ = ["router", "web_state"]
