"""Sending what the outbox holds: a day's planned digests (``send_day``) or the pending confirmation mails
(``send_confirmations``). Claim a batch, render, send over one reused connection, commit the outcome
after every message. N workers (``smtp_connections``) each hold their own connection.

Guarantees (DESIGN.md, "Delivery guarantees"): nothing planned is lost; a message is re-sent only if a
sender died between the server accepting it and the ``sent`` commit, and then with the same Message-ID;
4xx/timeouts retry with backoff until the deadline; 5xx fails the delivery (and a refused recipient is
suppressed); too many errors in a row stop the run loudly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.mail import (
    ListHeaders,
    OutgoingMail,
    PermanentSendError,
    TransientSendError,
    Transport,
    build_mail,
    make_transport,
    message_id,
)
from digest.render import build_context, render_confirmation, render_digest
from digest.signing import CONFIRM_MAX_AGE, LinkSigner
from digest.store import outbox, session_factory
from digest.store.outbox import DeliveryKind
from digest.store.papers import papers_by_ids
from digest.store.subscribers import find_subscriber

log = logging.getLogger(__name__)


class TooManySendErrors(RuntimeError):
    """The SMTP server failed too many messages in a row: the run stops instead of burning the list."""

    def __init__(self, message: str, report: SendReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class SendReport:
    digest_date: date | None  # None: confirmations (every date)
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0  # transient errors that were put back for another attempt
    resent: int = 0  # rows a dead sender left in flight, released to be sent again
    pending: int = 0  # still planned when the run ended (deadline reached): the next run sends them
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        day = self.digest_date.isoformat() if self.digest_date else None
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"digest_date": day}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def compose(session: Session, claimed: outbox.Claimed, settings: Settings, signer: LinkSigner) -> OutgoingMail:
    """Render one claimed delivery (a digest or a confirmation) into the mail that goes on the wire."""
    subscriber = find_subscriber(session, claimed.subscriber_id)
    if subscriber is None:
        raise LookupError(f"subscriber {claimed.subscriber_id} is gone")
    mid = message_id(claimed.subscriber_id, claimed.digest_date, settings.message_id_domain, claimed.kind.value)
    if claimed.kind is DeliveryKind.confirm:
        confirm_url = signer.confirm_url(claimed.subscriber_id, key=subscriber.link_key or "")
        rendered = render_confirmation(subscriber.email, confirm_url, settings.public_url.rstrip("/") + "/",
                                       CONFIRM_MAX_AGE // 86400)
        return build_mail(rendered, to_addr=subscriber.email, to_name=subscriber.name,
                          from_addr=settings.mail_from, message_id=mid, auto_submitted=True)
    picks = outbox.items_of(session, claimed.delivery_id)
    papers = papers_by_ids(session, (p.arxiv_id for p in picks))
    pairs = [(papers[p.arxiv_id], p) for p in picks if p.arxiv_id in papers]
    ctx = build_context(subscriber, claimed.digest_date, pairs, settings, signer)
    return build_mail(
        render_digest(ctx), to_addr=subscriber.email, to_name=subscriber.name, from_addr=settings.mail_from,
        message_id=mid, list_headers=ListHeaders(settings.list_id, ctx.unsubscribe_url),
    )


class _Run:
    def __init__(self, engine: Engine, settings: Settings, day: date | None, kind: DeliveryKind,
                 ids: list[int] | None, signer: LinkSigner, transport_factory: Callable[[], Transport],
                 patient: bool = True) -> None:
        self.sessions = session_factory(engine)
        self.settings = settings
        self.day = day
        self.kind = kind
        self.ids = ids
        self.signer = signer
        self.transport_factory = transport_factory
        self.patient = patient  # wait for rows whose retry is due later (until the deadline)
        self.report = SendReport(day)
        self.lock = threading.Lock()
        self.consecutive = 0
        self.abort = threading.Event()
        self.deadline = time.monotonic() + settings.send_deadline_seconds

    def _backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.send_retry_max, s.send_retry_initial * 2 ** max(0, attempts - 1)))

    def _error(self, counts: bool, text: str) -> None:
        with self.lock:
            self.report.errors.append(text)
            if counts:
                self.consecutive += 1
                if self.consecutive >= self.settings.send_max_consecutive_errors:
                    self.abort.set()

    def _ok(self) -> None:
        with self.lock:
            self.consecutive = 0
            self.report.sent += 1

    def _send_one(self, transport: Transport, claimed: outbox.Claimed) -> None:
        try:
            with self.sessions() as s:
                mail = compose(s, claimed, self.settings, self.signer)
        except Exception as e:  # a bug or missing data: recorded on the row, never dropped silently
            log.exception("cannot render delivery %s", claimed.delivery_id)
            with self.sessions.begin() as s:
                outbox.mark_failed(s, claimed.delivery_id, f"render: {type(e).__name__}: {e}")
            with self.lock:
                self.report.failed += 1
            self._error(True, f"render {claimed.delivery_id}: {e}")
            return
        to = mail.recipients[0]
        try:
            transport.send(mail)
        except TransientSendError as e:
            past_deadline = time.monotonic() >= self.deadline
            with self.sessions.begin() as s:
                outbox.mark_retry(s, claimed.delivery_id, f"{e}", datetime.now(timezone.utc) + self._backoff(claimed.attempts))
            with self.lock:
                self.report.retried += 1
            self._error(True, f"{to}: {e}" + (" (deadline reached)" if past_deadline else ""))
        except PermanentSendError as e:
            suppress = claimed.subscriber_id if e.recipient_rejected else None
            with self.sessions.begin() as s:
                outbox.mark_failed(s, claimed.delivery_id, str(e), suppress_subscriber=suppress)
            with self.lock:
                self.report.failed += 1
                self.report.suppressed += int(suppress is not None)
            # A refused recipient is that address's problem; any other 5xx is the server's.
            self._error(not e.recipient_rejected, f"{to}: {e}")
        else:
            with self.sessions.begin() as s:
                outbox.mark_sent(s, claimed.delivery_id, mail.message_id)
            self._ok()

    def worker(self) -> None:
        with self.transport_factory() as transport:
            while not self.abort.is_set():
                with self.sessions.begin() as s:
                    batch = outbox.claim_batch(s, self.day, self.settings.send_batch_size, self.kind, self.ids)
                if not batch:
                    if not self.patient:
                        return
                    with self.sessions() as s:
                        due = outbox.next_due(s, self.day, self.kind, self.ids)
                    if due is None:
                        return
                    wait = (_aware(due) - datetime.now(timezone.utc)).total_seconds()
                    if time.monotonic() + max(wait, 0) > self.deadline:
                        return  # left planned for the next run, counted as pending
                    time.sleep(min(max(wait, 0.01), 1.0))
                    continue
                for i, claimed in enumerate(batch):
                    if self.abort.is_set():
                        with self.sessions.begin() as s:
                            outbox.release(s, [c.delivery_id for c in batch[i:]])
                        return
                    self._send_one(transport, claimed)


def send_day(
    engine: Engine,
    settings: Settings,
    day: date,
    *,
    signer: LinkSigner | None = None,
    transport_factory: Callable[[], Transport] | None = None,
) -> SendReport:
    """Send every planned digest of ``day``. Safe to run again, and alongside another sender."""
    return _send(engine, settings, day, DeliveryKind.digest, None, signer, transport_factory)


def send_confirmations(
    engine: Engine,
    settings: Settings,
    *,
    ids: list[int] | None = None,
    signer: LinkSigner | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    patient: bool = True,
) -> SendReport:
    """Send the pending confirmation mails (only ``ids`` when given), retrying like digests.
    ``patient=False``: send what is due now and return, leaving later retries to the next call."""
    return _send(engine, settings, None, DeliveryKind.confirm, ids, signer, transport_factory, patient)


def _send(engine: Engine, settings: Settings, day: date | None, kind: DeliveryKind, ids: list[int] | None,
          signer: LinkSigner | None, transport_factory: Callable[[], Transport] | None,
          patient: bool = True) -> SendReport:
    run = _Run(engine, settings, day, kind, ids, signer or LinkSigner.from_settings(settings),
               transport_factory or (lambda: make_transport(settings)), patient)
    with run.sessions.begin() as s:
        run.report.resent = outbox.release_expired(s, day, timedelta(seconds=settings.send_lease_seconds), kind)
    workers = max(1, settings.smtp_connections if settings.smtp_host else 1)
    if workers == 1:
        run.worker()
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="sender") as pool:
            for f in [pool.submit(run.worker) for _ in range(workers)]:
                f.result()
    with run.sessions() as s:
        run.report.pending = outbox.status_counts(s, day, kind).get(outbox.DeliveryStatus.planned.value, 0)
    if run.abort.is_set():
        last = run.report.errors[-1] if run.report.errors else "?"
        raise TooManySendErrors(
            f"stopped after {settings.send_max_consecutive_errors} send errors in a row (last: {last}); "
            f"{run.report.sent} sent, {run.report.pending} left planned for the next run",
            run.report,
        )
    return run.report
