"""The app factory of the subscriber pages: the shared state, the security middleware, the routes
(``digest.web.routes``), and a background loop that retries confirmation mails left in the outbox."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from digest.config import Settings, get_settings
from digest.signing import LinkSigner, secret_of
from digest.store import create_db_engine, session_factory, upgrade
from digest.web import archive, logs
from digest.web.forms import MAX_BODY_BYTES
from digest.web.pages import message
from digest.web.routes import router
from digest.web.security import Csrf, RateLimiter
from digest.web.state import WebState

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


def _retry_loop(state: WebState, stop: threading.Event) -> None:
    while not stop.wait(state.settings.web_confirm_retry_seconds):
        state.send_confirmations()


def create_app(settings: Settings | None = None, *, rate_limit: int = 5, rate_window: float = 60.0) -> FastAPI:
    """The web application for ``settings`` (default: the environment). Raises ``MissingSecretError``
    when no secret key is configured and ``demo_secret_fallback`` is off."""
    settings = settings or get_settings()
    secret = secret_of(settings)  # first: refuse to start without a secret
    signer = LinkSigner(secret, settings.public_url)
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    state = WebState(settings, signer, Csrf(secret), RateLimiter(rate_limit, rate_window),
                     session_factory(engine))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.install()  # here: after the server has configured its logging
        stop = threading.Event()
        thread = threading.Thread(target=_retry_loop, args=(state, stop), name="confirmations", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    app = FastAPI(title="papers-digest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.web = state

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if request.method == "POST" and (not (length or "0").isdigit() or int(length or 0) > MAX_BODY_BYTES):
            response: Response = message(413, "Too large", "Too large", "That form is larger than this site accepts.")
        else:
            response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    app.include_router(router)
    app.include_router(archive.router)
    return app


__all__ = ["SECURITY_HEADERS", "create_app"]
