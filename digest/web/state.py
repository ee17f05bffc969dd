"""What every request of the web pages shares: settings, the link signer, CSRF tokens, the sign-up rate
limiter, the store's sessions, and the sending of confirmation mails through the outbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.signing import LinkSigner
from digest.web.security import Csrf, Network, RateLimiter, trusted_networks

if TYPE_CHECKING:
    from digest.embed import Embedder

log = logging.getLogger(__name__)


@dataclass
class WebState:
    settings: Settings
    signer: LinkSigner
    csrf: Csrf
    limiter: RateLimiter
    sessions: sessionmaker[Session]
    trusted_proxies: tuple[Network, ...] = field(init=False)
    embedder: Embedder | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.trusted_proxies = trusted_networks(self.settings.web_trusted_proxies)

    def embed_interests(self, texts: list[str]) -> None:
        """Encode and cache the vectors of interests just written (a background task, after the answer:
        the first one loads the model in this process). A failure is logged and loses nothing: the next
        plan encodes whatever is missing. Off with ``embed_interests_on_write=False``."""
        if not texts or not self.settings.embed_interests_on_write:
            return
        from digest.embed import Embedder, embed_interests

        if self.embedder is None:
            self.embedder = Embedder.from_settings(self.settings)
        try:
            embed_interests(self.sessions.kw["bind"], self.embedder, texts)
        except Exception:  # noqa: BLE001 - never crash the web worker over a cache
            log.exception("interest vectors not computed; the next plan computes them")

    def send_confirmations(self, ids: list[int] | None = None) -> None:
        """Send the confirmation mails that are due (only ``ids`` when given) without waiting for
        retries: a mail that fails stays in the outbox with its error and is tried again by the next
        drain (``create_app``'s background loop) or the next ``digest send``."""
        from digest.send import TooManySendErrors, send_confirmations

        engine = self.sessions.kw["bind"]
        try:
            report = send_confirmations(engine, self.settings, ids=ids, signer=self.signer, patient=False)
        except TooManySendErrors as e:
            log.error("confirmation mails: %s", e)
            return
        except Exception:  # noqa: BLE001 - never crash the web worker over mail; the rows stay planned
            log.exception("confirmation mails could not be sent; they stay in the outbox")
            return
        if report.retried or report.failed:
            log.warning("confirmation mails: %d sent, %d to retry, %d failed (%s)", report.sent, report.retried,
                        report.failed, "; ".join(report.errors[-3:]))
