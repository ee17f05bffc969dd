"""What every request of the web pages shares: settings, the link signer, CSRF tokens, the sign-up rate
limiter, the store's sessions, and the sending of confirmation mails through the outbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.signing import LinkSigner
from digest.web.security import Csrf, Network, RateLimiter, trusted_networks

log = logging.getLogger(__name__)


@dataclass
class WebState:
    settings: Settings
    signer: LinkSigner
    csrf: Csrf
    limiter: RateLimiter
    sessions: sessionmaker[Session]
    trusted_proxies: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.trusted_proxies = trusted_networks(self.settings.web_trusted_proxies)

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
