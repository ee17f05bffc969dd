"""Sending what the outbox holds: a day's planned digests (``send_day``) or the pending confirmation mails
(``send_confirmations``). Each worker claims a batch, loads what the batch needs in a few queries
(subscribers with the claim, items in one query, papers cached for the run), renders, and sends over its
own reused connection. ``smtp_connections`` (or ``connections``) workers run at once: that many
connections in total.

Guarantees (DESIGN.md, "Delivery guarantees"):

- Nothing planned is lost. Accepted messages are recorded ``sent`` in small groups (``send_mark_every``
  messages or ``send_mark_seconds``); a crash re-sends at most those not yet recorded, with the same
  Message-ID.
- A sender renews the lease of the rows it holds (a heartbeat every lease/3) and writes every outcome with
  compare-and-set on its claim token. A sender that finds it lost its claim (it stalled past the lease and
  another took the rows over) gives up the rest of its batch and counts nothing it no longer holds.
- 4xx and connection errors retry with backoff, each recipient until ``send_recipient_deadline_seconds``
  within the run (then it stays planned for the next run and the others go on), the run until
  ``send_deadline_seconds``. Long waits are logged (INFO) with what they wait for.
- A refusal only the recipient can cause (a mailbox code, ``digest.mail.errors``) fails the row and
  suppresses the address, unless the same happens to ``send_max_consecutive_errors`` recipients in a row:
  then it is the server's. A refusal that is the server's (relay, auth, policy, no enhanced code) leaves
  the row planned, and a second recipient refused the same way in a row stops the run
  (``ServerRefused``). Errors for ``send_max_consecutive_errors`` recipients in a row stop it too
  (``TooManySendErrors``). The streaks count recipients, not the retries of one (greylisting), except
  when the server cannot be reached at all (``TransientSendError.unreachable``): then every attempt
  counts. Both end with the next accepted message. An address that cannot travel (non-ASCII) fails alone and never counts.
- A planned digest whose subscriber is no longer active when it is claimed is skipped, not sent.

``limit`` bounds one call to that many claimed rows (a retried row claimed again counts again): a bounded
slice of the outbox, as a Dask task sends it (flows/daily.py). The call stops claiming once it has spent
its budget and leaves the rest planned for other senders; everything above holds for what it claimed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.mail import (
    ListHeaders,
    OutgoingMail,
    PermanentSendError,
    Refusal,
    TransientSendError,
    Transport,
    build_mail,
    make_transport,
    message_id,
)
from digest.models import Paper, Pick, Subscriber
from digest.render import build_context, render_confirmation, render_digest
from digest.signing import CONFIRM_MAX_AGE, LinkSigner
from digest.store import outbox, session_factory
from digest.store.outbox import Claimed, DeliveryKind
from digest.store.papers import papers_by_ids

log = logging.getLogger(__name__)

LONG_WAIT = 1.0  # seconds: a wait at least this long is announced (INFO)
ANNOUNCE_EVERY = 30.0  # seconds between two announcements of the same wait
MAX_ERRORS_KEPT = 200


class TooManySendErrors(RuntimeError):
    """The SMTP server failed too many messages in a row: the run stops instead of burning the list."""

    def __init__(self, message: str, report: SendReport) -> None:
        super().__init__(message)
        self.report = report


class ServerRefused(TooManySendErrors):
    """The server refuses mail whoever the recipient (relay denied, login or policy): the run stops with
    every row left planned and nobody suppressed."""


class StillLeased(RuntimeError):
    """Deliveries are still held by another sender (alive, or dead with its lease not yet run out)."""

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
    refused: int = 0  # refusals that were the server's: put back, never failed or suppressed
    resent: int = 0  # rows a dead sender left in flight, released to be sent again
    pending: int = 0  # still planned when the run ended: the next run sends them
    skipped: int = 0  # planned digests not sent: the subscriber left (or was suppressed) after planning
    deferred: int = 0  # rows past their per-recipient deadline in this run, left planned for the next
    lost: int = 0  # rows taken over by another sender after this one's lease ran out: not counted here
    leased: int = 0  # rows still held by another sender when the run ended
    leased_until: datetime | None = None  # when the last of those leases runs out, unless renewed
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        day = self.digest_date.isoformat() if self.digest_date else None
        until = self.leased_until.isoformat() if self.leased_until else None
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"digest_date": day,
                                                                            "leased_until": until}

    def leased_line(self) -> str | None:
        """``"N deliveries still leased by another sender until T"``, or None when none are."""
        if not self.leased or self.leased_until is None:
            return None
        return f"{_count(self.leased)} still leased by another sender until {_clock(self.leased_until)}"

    def add(self, other: SendReport) -> None:
        """Add ``other``'s counts (another sender of the same scope); its end state wins."""
        for name in ("sent", "failed", "suppressed", "retried", "refused", "resent", "skipped", "deferred", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.pending, self.leased, self.leased_until = other.pending, other.leased, other.leased_until
        self.errors.extend(other.errors[-MAX_ERRORS_KEPT:])


def _count(n: int, what: str = "delivery", plural: str = "deliveries") -> str:
    return f"{n} {what if n == 1 else plural}"


def _clock(when: datetime) -> str:
    return _aware(when).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# -- composing a batch ------------------------------------------------------------------------------


class _Composer:
    """Turns claimed rows into mails: a batch's items in one query, papers cached for the run."""

    def __init__(self, settings: Settings, signer: LinkSigner, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.signer = signer
        self.sessions = sessions
        self.papers: dict[str, Paper] = {}
        self.lock = threading.Lock()
        self.home_url = settings.public_url.rstrip("/") + "/"

    def batch(self, claimed: Sequence[Claimed]) -> list[OutgoingMail | Exception]:
        """One mail per row, or the exception that kept it from being built (a bug or missing data)."""
        digests = [c.delivery_id for c in claimed if c.kind is DeliveryKind.digest]
        items: dict[int, list[Pick]] = {}
        if digests:
            with self.sessions() as s:
                items = outbox.items_of_many(s, digests)
                missing = {p.arxiv_id for picks in items.values() for p in picks} - self.papers.keys()
                if missing:
                    found = papers_by_ids(s, missing)
                    with self.lock:
                        self.papers.update(found)
        out: list[OutgoingMail | Exception] = []
        for c in claimed:
            try:
                out.append(self.one(c, items.get(c.delivery_id, [])))
            except PermanentSendError as e:  # an address that cannot travel: the caller records it
                out.append(e)
            except Exception as e:  # recorded on the row by the caller, never dropped silently
                log.exception("cannot render delivery %s", c.delivery_id)
                out.append(e)
        return out

    def one(self, c: Claimed, picks: Sequence[Pick]) -> OutgoingMail:
        s = self.settings
        mid = message_id(c.subscriber_id, c.digest_date, s.message_id_domain, c.kind.value)
        if c.kind is DeliveryKind.confirm:
            rendered = render_confirmation(c.email, self.signer.confirm_url(c.subscriber_id, key=c.link_key), self.home_url,
                                           CONFIRM_MAX_AGE // 86400)
            return build_mail(rendered, to_addr=c.email, to_name=c.name, from_addr=s.mail_from, message_id=mid,
                              auto_submitted=True)
        subscriber = Subscriber(email=c.email, name=c.name, id=c.subscriber_id, link_key=c.link_key,
                                frequency=c.frequency, thumbnails=c.thumbnails, plain_text=c.plain_text)
        papers = self.papers
        pairs = [(papers[p.arxiv_id], p) for p in picks if p.arxiv_id in papers]
        ctx = build_context(subscriber, c.digest_date, pairs, s, self.signer)
        return build_mail(
            render_digest(ctx), to_addr=c.email, to_name=c.name, from_addr=s.mail_from, message_id=mid,
            list_headers=ListHeaders(s.list_id, ctx.unsubscribe_url),
        )


# -- the leases this run holds ------------------------------------------------------------------------


@dataclass
class _Hold:
    held: int  # rows still 'sending' under the token (decremented *before* each outcome is written)
    confirmed: float  # monotonic time the lease was last renewed and found whole
    lost: bool = False


class _Leases:
    """The claims this run holds. A heartbeat thread renews them every lease/3; ``confirm`` tells a worker
    before each message whether its claim is still whole (renewing at once when the heartbeat has not
    run for a while, e.g. after the process was stopped)."""

    def __init__(self, sessions: sessionmaker[Session], lease_seconds: float) -> None:
        self.sessions = sessions
        self.interval = max(lease_seconds / 3, 0.05)
        self.holds: dict[str, _Hold] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> _Leases:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def add(self, token: str, n: int) -> None:
        with self.lock:
            self.holds[token] = _Hold(n, time.monotonic())

    def settle(self, token: str, n: int = 1) -> None:
        """``n`` rows of ``token`` are about to be written (sent, failed, put back): no longer held."""
        with self.lock:
            hold = self.holds.get(token)
            if hold is not None:
                hold.held -= n
                if hold.held <= 0:
                    del self.holds[token]

    def lose(self, token: str) -> None:
        with self.lock:
            if token in self.holds:
                self.holds[token].lost = True

    def confirm(self, token: str) -> bool:
        """Whether every row still held under ``token`` is still this run's."""
        with self.lock:
            hold = self.holds.get(token)
            if hold is None or hold.lost:
                return hold is None
            fresh = time.monotonic() - hold.confirmed < self.interval * 1.5
        return fresh or self._renew(token)

    def _renew(self, token: str) -> bool:
        with self.sessions.begin() as s:
            n = outbox.renew(s, token)
        with self.lock:
            hold = self.holds.get(token)
            if hold is None:
                return True
            if n < hold.held:  # another sender took rows over: this claim is stale
                if not hold.lost:
                    log.warning("lost %d of %d claimed deliveries to another sender (this one stalled past "
                                "its lease): giving them up", hold.held - n, hold.held)
                hold.lost = True
                return False
            hold.confirmed = time.monotonic()
            return True

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                tokens = [t for t, h in self.holds.items() if not h.lost]
            for token in tokens:
                try:
                    self._renew(token)
                except Exception:  # noqa: BLE001 - a missed beat is retried; confirm() renews too
                    log.warning("could not renew a lease", exc_info=True)


# -- one run --------------------------------------------------------------------------------------------


class _Sent:
    """One worker's accepted messages not yet recorded: written in one statement per group."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.items: list[tuple[str, int, str]] = []  # token, delivery id, Message-ID
        self.started = 0.0

    def add(self, claimed: Claimed, mid: str, *, last_of_batch: bool = False) -> None:
        """Hold an accepted message; record the group when it is full or old enough, except after the
        batch's last message: the next claim records it in its own commit, right after."""
        if not self.items:
            self.started = time.monotonic()
        self.items.append((claimed.token, claimed.delivery_id, mid))
        s = self.run.settings
        if last_of_batch:
            return
        if len(self.items) >= s.send_mark_every or time.monotonic() - self.started >= s.send_mark_seconds:
            self.flush()

    def flush(self, session: Session | None = None) -> None:
        """Record the group, in ``session``'s transaction when given (saving a commit), else in its own."""
        if not self.items:
            return
        if session is None:
            with self.run.sessions.begin() as s:
                return self.flush(s)
        by_token: dict[str, dict[int, str]] = {}
        for token, delivery_id, mid in self.items:
            by_token.setdefault(token, {})[delivery_id] = mid
        self.items = []
        run = self.run
        for token, sent in by_token.items():
            run.leases.settle(token, len(sent))
        marked = 0
        for token, sent in by_token.items():
            done = len(outbox.mark_sent(session, token, sent))
            marked += done
            if done < len(sent):
                run.leases.lose(token)
        total = sum(len(v) for v in by_token.values())
        with run.lock:
            run.report.sent += marked
            run.report.lost += total - marked


class _Run:
    def __init__(self, engine: Engine, settings: Settings, day: date | None, kind: DeliveryKind,
                 ids: list[int] | None, signer: LinkSigner, transport_factory: Callable[[], Transport],
                 patient: bool = True, limit: int | None = None) -> None:
        self.sessions = session_factory(engine)
        self.settings = settings
        self.day = day
        self.kind = kind
        self.ids = ids
        self.transport_factory = transport_factory
        self.patient = patient  # wait for rows whose retry is due later (until the deadline)
        self.budget = limit  # rows this run may still claim (None: no bound)
        self.composer = _Composer(settings, signer, self.sessions)
        self.leases = _Leases(self.sessions, settings.send_lease_seconds)
        self.report = SendReport(day)
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.stop_reason: tuple[type[TooManySendErrors], str] | None = None
        self.deadline = time.monotonic() + settings.send_deadline_seconds
        self.first_try: dict[int, float] = {}  # delivery id -> when this run first tried it
        self.excluded: set[int] = set()  # past their per-recipient deadline: left for the next run
        # The brakes count distinct rows since the last accepted message: one recipient retried again and
        # again (greylisting at the end of the list) is not "errors in a row".
        self.erring: set[int] = set()  # rows whose errors count toward send_max_consecutive_errors
        # An unreachable server (refused connection, failed greeting, TLS or login) fails every recipient
        # alike: each such attempt counts, so a one-subscriber list stops too instead of retrying for an hour.
        self.unreachable = 0
        self.server_refusal: tuple[Refusal, set[int]] | None = None  # kind of the last server refusals, rows
        self.bounces: list[tuple[Claimed, PermanentSendError]] = []  # recipient refusals not yet written
        self.announced: tuple[datetime | None, float] = (None, 0.0)

    # -- outcomes (each row's outcome is written with compare-and-set on its claim) --

    def _backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.send_retry_max, s.send_retry_initial * 2 ** max(0, attempts - 1)))

    def _stop(self, kind: type[TooManySendErrors], headline: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = (kind, headline)
        self.abort.set()

    def _error(self, c: Claimed, counts: bool, text: str, *, unreachable: bool = False) -> None:
        with self.lock:
            self.report.errors.append(text)
            del self.report.errors[:-MAX_ERRORS_KEPT]
            if not counts:
                return
            self.erring.add(c.delivery_id)
            self.unreachable = self.unreachable + 1 if unreachable else 0
            limit = self.settings.send_max_consecutive_errors
            tripped = len(self.erring) >= limit or self.unreachable >= limit
        if tripped:
            self._stop(TooManySendErrors, f"stopped after {self.settings.send_max_consecutive_errors} send errors "
                                          f"in a row (last: {text})")

    def _accepted(self) -> list[tuple[Claimed, PermanentSendError]]:
        """A message went through: the error streaks end, and the held recipient refusals are real."""
        with self.lock:
            self.erring = set()
            self.unreachable = 0
            self.server_refusal = None
            bounces, self.bounces = self.bounces, []
        return bounces

    def _write_bounces(self, bounces: list[tuple[Claimed, PermanentSendError]]) -> None:
        if not bounces:
            return
        for c, _ in bounces:
            self.leases.settle(c.token)
        done = 0
        with self.sessions.begin() as s:
            for c, e in bounces:
                done += outbox.mark_failed(s, c.token, c.delivery_id, str(e), suppress_subscriber=c.subscriber_id)
        with self.lock:
            self.report.failed += done
            self.report.suppressed += done
            self.report.lost += len(bounces) - done

    def _put_back(self, c: Claimed, error: str) -> None:
        """Planned again, due after a backoff, or left for the next run past the recipient's deadline."""
        now = time.monotonic()
        backoff = self._backoff(c.attempts)
        first = self.first_try.get(c.delivery_id, now)
        deferred = now + backoff.total_seconds() > first + self.settings.send_recipient_deadline_seconds
        self.leases.settle(c.token)
        with self.sessions.begin() as s:
            held = outbox.mark_retry(s, c.token, c.delivery_id, error, datetime.now(timezone.utc) + backoff)
        with self.lock:
            if not held:
                self.report.lost += 1
            elif deferred:
                self.excluded.add(c.delivery_id)
                self.report.deferred += 1
        if held and deferred:
            log.info("%s: still refused after %s (%s); left planned for the next run", c.email,
                     _seconds(now - first), error)

    def _fail(self, c: Claimed, error: str, counts: bool) -> None:
        self.leases.settle(c.token)
        with self.sessions.begin() as s:
            held = outbox.mark_failed(s, c.token, c.delivery_id, error)
        with self.lock:
            self.report.failed += int(held)
            self.report.lost += int(not held)
        self._error(c, counts, f"{c.email}: {error}")

    def _refused_by_server(self, c: Claimed, e: PermanentSendError) -> None:
        self._put_back(c, str(e))
        with self.lock:
            self.report.refused += 1
            kind, rows = self.server_refusal or (e.refusal, set())
            rows = rows | {c.delivery_id} if kind is e.refusal else {c.delivery_id}
            self.server_refusal = (e.refusal, rows)
        if len(rows) >= 2:  # two recipients in a row: a server that refuses whoever the recipient is
            self._stop(ServerRefused, f"the SMTP server refuses mail for any recipient ({e.refusal.value}: {e}; "
                                      f"{len(rows)} recipients in a row); nobody was marked failed or suppressed")
        self._error(c, True, f"{c.email}: {e}")

    def _bounced(self, c: Claimed, e: PermanentSendError) -> None:
        """The recipient's refusal, held until a message goes through: the same refusal for
        ``send_max_consecutive_errors`` recipients in a row is the server's, and suppresses nobody."""
        with self.lock:
            self.bounces.append((c, e))
            self.report.errors.append(f"{c.email}: {e}")
            streak = None
            if len(self.bounces) >= self.settings.send_max_consecutive_errors:
                streak, self.bounces = self.bounces, []
        if streak is None:
            return
        for held, err in streak:
            self._put_back(held, f"{err} (the same refusal for {len(streak)} recipients in a row: the server's)")
        with self.lock:
            self.report.refused += len(streak)
        self._stop(ServerRefused, f"the SMTP server refuses mail for any recipient ({len(streak)} recipients in a "
                                  f"row refused, last: {e}); nobody was marked failed or suppressed")

    def _refused(self, c: Claimed, e: PermanentSendError) -> None:
        if e.recipient_rejected:
            self._bounced(c, e)
        elif e.by_server:
            self._refused_by_server(c, e)
        else:  # the message's or an unsendable address's: fails alone; an address never stops the run
            self._fail(c, str(e), counts=e.refusal is not Refusal.address)

    def _send_one(self, transport: Transport, c: Claimed, mail: OutgoingMail, sent: _Sent, last: bool) -> None:
        self.first_try.setdefault(c.delivery_id, time.monotonic())
        try:
            transport.send(mail)
        except TransientSendError as e:
            with self.lock:
                self.report.retried += 1
            self._put_back(c, str(e))
            self._error(c, True, f"{c.email}: {e}", unreachable=e.unreachable)
        except PermanentSendError as e:
            self._refused(c, e)
        else:
            sent.add(c, mail.message_id, last_of_batch=last)
            self._write_bounces(self._accepted())

    # -- a worker: one connection --

    def _take(self) -> int:
        """How many rows the next claim may take: the batch size, within what is left of the budget
        (reserved here; ``_claim`` gives back what it did not get)."""
        take = self.settings.send_batch_size
        if self.budget is None:
            return take
        with self.lock:
            take = max(0, min(take, self.budget))
            self.budget -= take
        return take

    def spent(self) -> bool:
        with self.lock:
            return self.budget is not None and self.budget <= 0

    def _claim(self, sent: _Sent) -> outbox.Batch:
        take = self._take()
        if not take:
            return outbox.Batch("")
        with self.sessions.begin() as s:  # the group waiting to be recorded goes in the same commit
            sent.flush(s)
            batch = outbox.claim_batch(s, self.day, take, self.kind, self.ids, self.excluded)
        if self.budget is not None and len(batch) < take:
            with self.lock:
                self.budget += take - len(batch)
        if batch.skipped:
            with self.lock:
                self.report.skipped += batch.skipped
        if batch:
            self.leases.add(batch.token, len(batch))
        return batch

    def _send_batch(self, transport: Transport, batch: outbox.Batch, sent: _Sent) -> None:
        mails = self.composer.batch(batch)
        for i, (c, mail) in enumerate(zip(batch, mails)):
            if self.abort.is_set() or not self.leases.confirm(batch.token):
                rest = [r.delivery_id for r in batch[i:]]
                sent.flush()
                self.leases.settle(batch.token, len(rest))
                with self.sessions.begin() as s:
                    back = outbox.release(s, batch.token, rest)
                if not self.abort.is_set():  # the claim was lost: the rest is another sender's now
                    with self.lock:
                        self.report.lost += len(rest) - back
                return
            if isinstance(mail, PermanentSendError):  # an address that cannot travel
                self._refused(c, mail)
                continue
            if isinstance(mail, Exception):
                self._fail(c, f"render: {type(mail).__name__}: {mail}", counts=True)
                continue
            self._send_one(transport, c, mail, sent, last=i == len(batch) - 1)

    def _wait(self) -> bool:
        """Nothing is due now: wait for the next retry (False when there is none, or not before the deadline)."""
        if not self.patient:
            return False
        with self.sessions.begin() as s:
            resent = outbox.release_expired(s, self.day, timedelta(seconds=self.settings.send_lease_seconds),
                                            self.kind)
            w = outbox.waiting(s, self.day, self.kind, self.ids, self.excluded)
        if resent:
            with self.lock:
                self.report.resent += resent
            return True
        if w.due is None:
            return False
        wait = (_aware(w.due) - datetime.now(timezone.utc)).total_seconds()
        if time.monotonic() + max(wait, 0) > self.deadline:
            log.info("%s due after the run's deadline: left planned for the next run", _count(w.count))
            return False
        if wait >= LONG_WAIT:
            self._announce(w, wait)
        time.sleep(min(max(wait, 0.01), 1.0))
        return True

    def _announce(self, w: outbox.Waiting, wait: float) -> None:
        with self.lock:
            due, at = self.announced
            if due == w.due and time.monotonic() - at < ANNOUNCE_EVERY:
                return
            self.announced = (w.due, time.monotonic())
        assert w.due is not None
        log.info("waiting %s, until %s, for %s to retry (last error: %s)", _seconds(wait), _clock(w.due),
                 _count(w.count), w.last_error or "none")

    def worker(self) -> None:
        sent = _Sent(self)
        with self.transport_factory() as transport:
            try:
                while not self.abort.is_set():
                    batch = self._claim(sent)
                    if batch:
                        self._send_batch(transport, batch, sent)
                        continue
                    sent.flush()
                    if self.spent() or not self._wait():
                        return
            finally:
                sent.flush()


def send_day(
    engine: Engine,
    settings: Settings,
    day: date,
    *,
    signer: LinkSigner | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    connections: int | None = None,
    limit: int | None = None,
) -> SendReport:
    """Send every planned digest of ``day`` over ``connections`` SMTP connections in total (default
    ``smtp_connections``), or at most ``limit`` of them (claimed rows; the rest stays planned). Safe to run
    again, and alongside another sender."""
    return _send(engine, settings, day, DeliveryKind.digest, None, signer, transport_factory, True, connections,
                 limit)


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
          patient: bool = True, connections: int | None = None, limit: int | None = None) -> SendReport:
    if limit is not None and limit < 1:
        raise ValueError(f"a send limit must be at least 1, not {limit}")
    run = _Run(engine, settings, day, kind, ids, signer or LinkSigner.from_settings(settings),
               transport_factory or (lambda: make_transport(settings)), patient, limit)
    lease = timedelta(seconds=settings.send_lease_seconds)
    with run.sessions.begin() as s:
        run.report.resent = outbox.release_expired(s, day, lease, kind)
    workers = max(1, connections or (settings.smtp_connections if settings.smtp_host else 1))
    with run.leases:
        try:
            if workers == 1:
                run.worker()
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="sender") as pool:
                    for f in [pool.submit(run.worker) for _ in range(workers)]:
                        f.result()
        finally:
            with run.lock:
                bounces, run.bounces = run.bounces, []
            if run.abort.is_set():  # refusals held when the run stopped are not trusted: put back
                for c, e in bounces:
                    run._put_back(c, str(e))
            else:
                run._write_bounces(bounces)
    with run.sessions() as s:
        run.report.pending = outbox.status_counts(s, day, kind).get(outbox.DeliveryStatus.planned.value, 0)
        run.report.leased, run.report.leased_until = outbox.leased(s, day, lease, kind)
    if run.stop_reason is not None:
        error, headline = run.stop_reason
        raise error(f"{headline}; {run.report.sent} sent, {run.report.pending} left planned for the next run",
                    run.report)
    return run.report


def settle_leases(engine: Engine, settings: Settings, day: date, *, wait_seconds: float | None = None,
                  connections: int | None = None) -> SendReport:
    """For a scheduled run, once its own senders are done: deliveries still ``sending`` belong to another
    sender (a crashed run whose lease has not run out, or one still at work). Wait for them, at most
    ``wait_seconds`` (default ``send_lease_wait_seconds``), sending what their lease releases; raise
    ``StillLeased`` ("N deliveries still leased by another sender until T") if they outlast the wait."""
    give_up = time.monotonic() + (settings.send_lease_wait_seconds if wait_seconds is None else wait_seconds)
    lease = timedelta(seconds=settings.send_lease_seconds)
    sessions = session_factory(engine)
    total = SendReport(day)
    announced: datetime | None = None
    while True:
        with sessions() as s:
            total.leased, total.leased_until = outbox.leased(s, day, lease)
            total.pending = outbox.status_counts(s, day).get(outbox.DeliveryStatus.planned.value, 0)
        if not total.leased or total.leased_until is None:
            return total
        left = (total.leased_until - datetime.now(timezone.utc)).total_seconds()
        if left <= 0:
            total.add(send_day(engine, settings, day, connections=connections))
            continue
        if time.monotonic() + left > give_up:
            raise StillLeased(f"{total.leased_line()}; the run cannot complete before that", total)
        if announced != total.leased_until:
            announced = total.leased_until
            log.info("waiting %s, until %s, for %s leased by another sender", _seconds(left),
                     _clock(total.leased_until), _count(total.leased))
        time.sleep(min(left + 0.05, 1.0))
