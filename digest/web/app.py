"""The FastAPI application of the subscriber pages.

Every link token is verified with ``LinkSigner`` for its own purpose: a tampered, expired or foreign
token gets a 400 page and changes nothing. State-changing GETs are limited to following a link from a
mail (confirm, feedback); unsubscribing needs a POST (RFC 8058 one-click). Forms carry a signed CSRF
token and POSTs from another origin are refused. Pages are Jinja templates (``templates/*.html.j2``,
autoescaped)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from digest.addresses import InvalidAddressError, normalise_email
from digest.config import Settings, get_settings
from digest.mail import POLICY, make_transport
from digest.models import SubscriberStatus
from digest.pipeline import open_store
from digest.render import environment
from digest.signing import DEMO_SECRET, BadToken, LinkSigner
from digest.store import session_factory
from digest.store.feedback import record_feedback
from digest.store.subscribers import add_subscriber
from digest.store.tables import SubscriberRow, utcnow
from digest.web.security import Csrf, CsrfError, RateLimiter, check_same_origin

log = logging.getLogger(__name__)

CONFIRM_MAX_AGE = 7 * 24 * 3600  # a confirmation link works for 7 days
MAX_LINES = 30  # interests / keywords per field
MAX_LINE_CHARS = 200
MAX_FIELD_CHARS = 10_000
FREQUENCIES = ("daily", "weekly")
MAX_BODY_BYTES = 64 * 1024  # every form here is a few KB; a reverse proxy should cap chunked bodies too

SECURITY_HEADERS = {
    # no scripts at all; inline <style> only; forms may only post back to us; never framed
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # token URLs must never leak to other sites through Referer (not "no-referrer": browsers then send
    # "Origin: null" on form POSTs, which the same-origin check refuses)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class FormError(ValueError):
    """A form value the user must correct (shown on the page, 400)."""


@dataclass
class WebState:
    settings: Settings
    signer: LinkSigner
    csrf: Csrf
    limiter: RateLimiter
    sessions: Any  # sessionmaker[Session]


def _secret(settings: Settings) -> str:
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    return DEMO_SECRET  # LinkSigner.from_settings has already refused this unless the fallback is on


def create_app(settings: Settings | None = None, *, rate_limit: int = 5, rate_window: float = 60.0) -> FastAPI:
    """The web application for ``settings`` (default: the environment). Raises ``MissingSecretError``
    when no secret key is configured and ``demo_secret_fallback`` is off."""
    settings = settings or get_settings()
    signer = LinkSigner.from_settings(settings)  # first: refuse to start without a secret
    engine = open_store(settings)
    state = WebState(settings, signer, Csrf(_secret(settings)), RateLimiter(rate_limit, rate_window),
                     session_factory(engine))
    app = FastAPI(title="papers-digest", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = state

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if request.method == "POST" and (not (length or "0").isdigit() or int(length or 0) > MAX_BODY_BYTES):
            response: Any = _page("message.html.j2", 413, title="Too large", heading="Too large",
                                  message="That form is larger than this site accepts.")
        else:
            response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    # -- subscribe -------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def subscribe_page() -> HTMLResponse:
        return _subscribe_form(state)

    @app.post("/subscribe", response_class=HTMLResponse)
    def subscribe(
        request: Request,
        background: BackgroundTasks,
        email: Annotated[str, Form()] = "",
        interests: Annotated[str, Form()] = "",
        max_papers: Annotated[str, Form()] = "10",
        csrf_token: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        client = request.client.host if request.client else "unknown"
        retry = state.limiter.hit(client)
        if retry is not None:
            resp = _page("message.html.j2", 429, title="Too many requests",
                         heading="Too many requests",
                         message="Too many sign-ups from your address. Please wait a minute and try again.")
            resp.headers["Retry-After"] = str(int(retry) + 1)
            return resp
        values = {"email": email[:400], "interests": interests[:MAX_FIELD_CHARS], "max_papers": max_papers[:10]}
        try:
            check_same_origin(settings.public_url, request.headers.get("origin"), request.headers.get("referer"))
            state.csrf.check(csrf_token, "subscribe")
        except CsrfError:
            return _subscribe_form(state, values, 403, "This form has expired or was not sent from this site. "
                                   "Please check your entries and submit it again.")
        try:
            if len(email) > 320:
                raise InvalidAddressError("invalid email address: too long")
            address = normalise_email(email)
            wanted = _lines(interests, "interests")
            n = _max_papers(max_papers)
        except InvalidAddressError as e:
            return _subscribe_form(state, values, 400, _address_message(e))
        except FormError as e:
            return _subscribe_form(state, values, 400, str(e))

        with state.sessions.begin() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == address))
            if row is None:
                sub = add_subscriber(session, address, interests=wanted, max_papers=n,
                                     status=SubscriberStatus.pending)
                sid: int | None = sub.id
            elif row.status == SubscriberStatus.active.value:
                sid = None  # already subscribed: nothing is sent, and the page says the same
            else:  # pending, unsubscribed, bounced: a fresh confirmation; nothing changes until it is used
                sid = row.id
        if sid is not None:
            background.add_task(_send_confirmation, state, address, sid)
        # The same page whatever the address's state: the page never tells whether it was known.
        return _page("message.html.j2", 200, title="Check your inbox", heading="Check your inbox",
                     message=f"If {address} can receive mail, a confirmation link is on its way. "
                     "Follow it within 7 days to start receiving the digest.")

    # -- confirm ---------------------------------------------------------------------------------

    @app.get("/confirm/{token}", response_class=HTMLResponse)
    def confirm(token: str) -> HTMLResponse:
        try:
            sid = state.signer.verify("confirm", token, max_age=CONFIRM_MAX_AGE)["subscriber_id"]
        except BadToken as e:
            return _bad_link(e)
        with state.sessions.begin() as session:
            row = session.get(SubscriberRow, sid)
            if row is None:
                return _bad_link(BadToken("invalid confirm link"))
            if row.status != SubscriberStatus.active.value:
                row.status = SubscriberStatus.active.value
                row.confirmed_at = utcnow()
        return _page("message.html.j2", 200, title="Subscription confirmed", heading="You're subscribed",
                     message="Your first digest arrives with the next daily run.",
                     link=state.signer.preferences_url(sid), link_text="Edit your preferences")

    # -- unsubscribe -----------------------------------------------------------------------------

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        try:
            state.signer.verify("unsubscribe", token)
        except BadToken as e:
            return _bad_link(e)
        # GET never unsubscribes (mail scanners follow links): the button POSTs, like RFC 8058 clients.
        return _page("unsubscribe.html.j2", 200, title="Unsubscribe", action=f"/unsubscribe/{token}")

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe(token: str) -> HTMLResponse:
        # RFC 8058 one-click: the signed token is the authorisation; no cookie, login or CSRF token.
        try:
            sid = state.signer.verify("unsubscribe", token)["subscriber_id"]
        except BadToken as e:
            return _bad_link(e)
        with state.sessions.begin() as session:
            row = session.get(SubscriberRow, sid)
            if row is not None and row.status != SubscriberStatus.unsubscribed.value:
                row.status = SubscriberStatus.unsubscribed.value
        return _page("message.html.j2", 200, title="Unsubscribed", heading="You're unsubscribed",
                     message="You will not receive the digest any more. Changed your mind? "
                     "Sign up again at any time.", link="/", link_text="Subscribe again")

    # -- feedback --------------------------------------------------------------------------------

    @app.get("/feedback/{token}", response_class=HTMLResponse)
    def feedback(token: str) -> HTMLResponse:
        # paper and vote come from the signed token; the query string (?paper=&v=) is only for humans
        try:
            data = state.signer.verify("feedback", token)
            sid, paper, vote = data["subscriber_id"], data.get("p"), data.get("v")
            if not isinstance(paper, str) or vote not in ("up", "down"):
                raise BadToken("invalid feedback link")
        except BadToken as e:
            return _bad_link(e)
        try:
            with state.sessions.begin() as session:
                if session.get(SubscriberRow, sid) is None:
                    raise LookupError(sid)
                record_feedback(session, sid, paper, 1 if vote == "up" else -1)
        except (LookupError, IntegrityError, ValueError):
            return _page("message.html.j2", 404, title="Not found", heading="Not found",
                         message="This paper or subscription no longer exists.")
        more = vote == "up"
        return _page("message.html.j2", 200, title="Thanks for your feedback", heading="Thanks!",
                     message=("You'll see more papers like this one." if more
                              else "You'll see fewer papers like this one."),
                     link=state.signer.preferences_url(sid), link_text="Edit your preferences")

    # -- preferences -----------------------------------------------------------------------------

    @app.get("/preferences/{token}", response_class=HTMLResponse)
    def preferences_page(token: str) -> HTMLResponse:
        try:
            sid = state.signer.verify("preferences", token)["subscriber_id"]
        except BadToken as e:
            return _bad_link(e)
        with state.sessions() as session:
            row = session.get(SubscriberRow, sid)
            if row is None:
                return _bad_link(BadToken("invalid preferences link"))
            return _preferences_form(state, token, row)

    @app.post("/preferences/{token}", response_class=HTMLResponse)
    def preferences_save(
        request: Request,
        token: str,
        interests: Annotated[str, Form()] = "",
        negative_interests: Annotated[str, Form()] = "",
        include_keywords: Annotated[str, Form()] = "",
        exclude_keywords: Annotated[str, Form()] = "",
        max_papers: Annotated[str, Form()] = "",
        frequency: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        try:
            sid = state.signer.verify("preferences", token)["subscriber_id"]
        except BadToken as e:
            return _bad_link(e)
        fields = {"interests": interests, "negative_interests": negative_interests,
                  "include_keywords": include_keywords, "exclude_keywords": exclude_keywords}
        status, error = 200, None
        try:
            check_same_origin(settings.public_url, request.headers.get("origin"), request.headers.get("referer"))
            state.csrf.check(csrf_token, "preferences", sid)
        except CsrfError:
            status, error = 403, "This form has expired or was not sent from this site. Nothing was saved: " \
                "please try again."
        if error is None:
            try:
                parsed = {k: _lines(v, k.replace("_", " ")) for k, v in fields.items()}
                n = _max_papers(max_papers)
                if frequency not in FREQUENCIES:
                    raise FormError("frequency must be daily or weekly")
            except FormError as e:
                status, error = 400, f"{e}. Nothing was saved."
        with state.sessions.begin() as session:
            row = session.get(SubscriberRow, sid)
            if row is None:
                return _bad_link(BadToken("invalid preferences link"))
            if error is not None:  # nothing written: the form shows the stored values again
                return _preferences_form(state, token, row, status, error=error)
            for k, v in parsed.items():
                setattr(row, k, v)
            row.max_papers = n
            row.frequency = frequency
            session.flush()
            return _preferences_form(state, token, row, 200, notice="Your preferences are saved.")

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app


# -- helpers -------------------------------------------------------------------------------------------


def _page(template: str, status: int, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("link", None)
    ctx.setdefault("link_text", None)
    return HTMLResponse(environment().get_template(template).render(**ctx), status_code=status)


def _bad_link(e: BadToken) -> HTMLResponse:
    message = ("This link has expired. Sign up again to get a new one." if e.expired
               else "This link is invalid or incomplete. Please use the link exactly as it was mailed to you.")
    return _page("message.html.j2", 400, title="Invalid link", heading="This link does not work",
                 message=message, link="/", link_text="Go to the sign-up page")


def _subscribe_form(state: WebState, values: dict[str, str] | None = None, status: int = 200,
                    error: str | None = None) -> HTMLResponse:
    values = values or {"email": "", "interests": "", "max_papers": "10"}
    return _page("subscribe.html.j2", status, title="Subscribe - Papers Digest", values=values, error=error,
                 csrf_token=state.csrf.token("subscribe"))


def _preferences_form(state: WebState, token: str, row: SubscriberRow, status: int = 200, *,
                      error: str | None = None, notice: str | None = None) -> HTMLResponse:
    prefs = {
        "interests": "\n".join(row.interests), "negative_interests": "\n".join(row.negative_interests),
        "include_keywords": "\n".join(row.include_keywords), "exclude_keywords": "\n".join(row.exclude_keywords),
        "max_papers": row.max_papers, "frequency": row.frequency,
    }
    return _page("preferences.html.j2", status, title="Preferences - Papers Digest", email=row.email,
                 sub_status=row.status, prefs=prefs, frequencies=FREQUENCIES, action=f"/preferences/{token}",
                 unsubscribe_action=f"/unsubscribe/{state.signer.token('unsubscribe', row.id)}",
                 csrf_token=state.csrf.token("preferences", row.id), error=error, notice=notice)


def _lines(text: str, what: str) -> list[str]:
    if len(text) > MAX_FIELD_CHARS:
        raise FormError(f"{what}: too long")
    out: list[str] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise FormError(f"{what}: each line must be at most {MAX_LINE_CHARS} characters")
        if line not in out:
            out.append(line)
    if len(out) > MAX_LINES:
        raise FormError(f"{what}: at most {MAX_LINES} lines")
    return out


def _max_papers(raw: str) -> int:
    try:
        n = int(raw.strip())
    except ValueError:
        raise FormError("papers per mail must be a whole number between 1 and 100") from None
    if not 1 <= n <= 100:
        raise FormError("papers per mail must be between 1 and 100")
    return n


def _address_message(e: InvalidAddressError) -> str:
    # the validator's reason without echoing the raw input twice
    text = str(e)
    reason = text.split(": ", 1)[1] if ": " in text and text.startswith("invalid email address") else ""
    return f"That doesn't look like a valid email address{': ' + reason if reason else '.'}"


def confirmation_message(settings: Settings, signer: LinkSigner, address: str, subscriber_id: int) -> EmailMessage:
    """The double opt-in mail: text and HTML, with the signed confirm link."""
    env = environment()
    ctx = {"confirm_url": signer.confirm_url(subscriber_id), "email": address, "days": CONFIRM_MAX_AGE // 86400,
           "home_url": settings.public_url.rstrip("/") + "/"}
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.mail_from
    msg["To"] = address
    msg["Subject"] = "Confirm your Papers Digest subscription"
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid("confirm", domain=settings.message_id_domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(env.get_template("confirm.txt.j2").render(**ctx))
    msg.add_alternative(env.get_template("confirm.html.j2").render(**ctx), subtype="html")
    return msg


def _send_confirmation(state: WebState, address: str, subscriber_id: int) -> None:
    """Runs after the response (same timing for every address). A failure is logged: the person can
    simply sign up again."""
    try:
        msg = confirmation_message(state.settings, state.signer, address, subscriber_id)
        with make_transport(state.settings) as transport:
            transport.send(msg)
    except Exception:  # noqa: BLE001 - never crash the worker over one mail
        log.exception("could not send the confirmation mail to subscriber %s", subscriber_id)


__all__ = ["CONFIRM_MAX_AGE", "confirmation_message", "create_app"]
