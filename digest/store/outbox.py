"""The outbox: every mail the product sends is a row here first. Digests are planned idempotently (one per
subscriber and date), confirmations are enqueued (at most one per subscriber and day); senders claim rows
with compare-and-set and record each outcome.

Every state change is a short transaction, so a crash loses nothing: a row is ``planned`` until a sender
claims it (``sending``, under a claim token), and ``sent`` is committed shortly after the SMTP server
accepts the message (in small groups). A live sender renews the lease of the rows it holds; a row left
``sending`` by a dead or stalled sender is released after the lease and sent again with the same
Message-ID. Every outcome is written with compare-and-set on the claim token, so a sender that lost a
row to another records nothing for it.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache

from sqlalchemy import ColumnElement, Update, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import Pick, PickColumns, SubscriberStatus
from digest.store.bulk import IN_CHUNK, chunks, insert_ignoring_conflicts
from digest.store.tables import DeliveryItemRow, DeliveryRow, PaperRow, SubscriberRow, utcnow


class DeliveryKind(StrEnum):
    digest = "digest"  # the day's digest, with its items
    confirm = "confirm"  # the double opt-in mail


class DeliveryStatus(StrEnum):
    planned = "planned"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


@dataclass(frozen=True, slots=True)
class PlanReport:
    planned: int = 0  # new rows with papers to send
    skipped: int = 0  # new rows with nothing to send
    existing: int = 0  # (subscriber, date) already planned before: left as they were


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row a sender holds: ``token`` is its claim, checked by every write of the outcome."""

    delivery_id: int
    subscriber_id: int
    digest_date: date
    attempts: int
    resends: int
    kind: DeliveryKind = DeliveryKind.digest
    token: str = ""
    email: str = ""  # the subscriber's address, name and link key when the row was claimed
    name: str | None = None
    link_key: str = ""
    frequency: str = "daily"  # the subscriber's cadence: a weekly digest says so in its subject
    thumbnails: bool = False  # how the subscriber wants the mail to look, when the row was claimed
    plain_text: bool = False


class Batch(list[Claimed]):
    """The rows one claim took (a list of ``Claimed``), under one ``token``. ``skipped``: planned digests
    of subscribers no longer active, marked ``skipped`` by this claim instead of being sent."""

    def __init__(self, token: str, rows: Iterable[Claimed] = (), skipped: int = 0) -> None:
        super().__init__(rows)
        self.token = token
        self.skipped = skipped


def _scope(kind: DeliveryKind, digest_date: date | None) -> list[ColumnElement[bool]]:
    """The rows one sender works on: a kind, and for digests one date (``None``: every date)."""
    where = [DeliveryRow.kind == kind.value]
    if digest_date is not None:
        where.append(DeliveryRow.digest_date == digest_date)
    return where


def plan_deliveries(session: Session, digest_date: date,
                    picks: Mapping[int, Sequence[Pick]] | PickColumns, *,
                    ranked_at: datetime | None = None) -> PlanReport:
    """One delivery per subscriber for ``digest_date`` with its ranked items (``picks``: per subscriber, or
    as columns straight from the ranking). Idempotent: a pair that exists is left untouched, also when
    another planner inserts it at the same moment. ``ranked_at``: when the ranking read the stored papers
    (default now), kept as the rows' ``created_at``: papers stored after it were not weighed for these
    digests (``LastDigest``).

    Two bulk statements: the deliveries with ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, then the
    items of the deliveries this call inserted (theirs alone: no other writer has them)."""
    cols = picks if isinstance(picks, PickColumns) else PickColumns.from_picks(picks)
    if not cols.subscriber_ids:
        return PlanReport()
    counts = [0] * len(cols.subscriber_ids)
    for r in cols.row:
        counts[r] += 1
    now = utcnow()
    planned_, skipped_ = DeliveryStatus.planned.value, DeliveryStatus.skipped.value
    kind = DeliveryKind.digest.value
    rows = [
        {"subscriber_id": sid, "digest_date": digest_date, "kind": kind, "status": planned_ if n else skipped_,
         "attempts": 0, "resends": 0, "created_at": ranked_at or now, "updated_at": now}
        for sid, n in zip(cols.subscriber_ids, counts)
    ]
    inserted = dict(  # subscriber id -> new delivery id
        (sid, did) for did, sid in insert_ignoring_conflicts(
            session, DeliveryRow, rows, returning=(DeliveryRow.id, DeliveryRow.subscriber_id))
    )
    delivery = [inserted.get(sid, 0) for sid in cols.subscriber_ids]
    evidence = cols.evidence or [None] * len(cols.row)
    items = [
        {"delivery_id": d, "rank": rank, "arxiv_id": aid, "score": score, "reason": reason, "evidence": ev}
        for d, rank, aid, score, reason, ev in zip(
            (delivery[r] for r in cols.row), cols.rank, cols.arxiv_id, cols.score, cols.reason, evidence)
        if d
    ]
    if items:
        session.execute(insert(DeliveryItemRow.__table__), items)
    planned = sum(1 for sid, n in zip(cols.subscriber_ids, counts) if n and sid in inserted)
    return PlanReport(planned=planned, skipped=len(inserted) - planned,
                      existing=len(cols.subscriber_ids) - len(inserted))


def enqueue_confirmations(session: Session, subscriber_ids: Sequence[int], day: date) -> int:
    """A confirmation mail for each of ``subscriber_ids`` (a bulk import of pending subscribers), in one
    bulk statement; a subscriber who has one for ``day`` already keeps it. Returns how many were queued."""
    now = utcnow()
    rows = [{"subscriber_id": sid, "digest_date": day, "kind": DeliveryKind.confirm.value,
             "status": DeliveryStatus.planned.value, "attempts": 0, "resends": 0, "created_at": now,
             "updated_at": now} for sid in subscriber_ids]
    return len(insert_ignoring_conflicts(session, DeliveryRow, rows, returning=(DeliveryRow.id,)))


def enqueue_confirmation(session: Session, subscriber_id: int, day: date, *,
                         min_interval: timedelta | None = None) -> int | None:
    """A confirmation mail for ``subscriber_id``, to be sent like any other mail (claimed, retried,
    recorded). At most one per subscriber and ``day``, and none while the last one is younger than
    ``min_interval``: returns the new row's id, or ``None`` when that confirmation already exists (also
    when a concurrent request inserted it a moment ago)."""
    now = utcnow()
    if min_interval is not None and session.scalar(
        select(DeliveryRow.id).where(DeliveryRow.subscriber_id == subscriber_id,
                                     DeliveryRow.kind == DeliveryKind.confirm.value,
                                     DeliveryRow.created_at > now - min_interval).limit(1)
    ) is not None:
        return None
    row = DeliveryRow(subscriber_id=subscriber_id, digest_date=day, kind=DeliveryKind.confirm.value,
                      status=DeliveryStatus.planned.value, attempts=0, resends=0, created_at=now, updated_at=now)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row.id


def release_expired(session: Session, digest_date: date | None, lease: timedelta,
                    kind: DeliveryKind = DeliveryKind.digest) -> int:
    """Rows left ``sending`` longer than ``lease`` (their sender died or stalled: a live sender renews its
    lease) go back to ``planned`` without a claim; returns how many, which is how many messages may be
    sent a second time."""
    cutoff = utcnow() - lease
    result = session.execute(
        update(DeliveryRow)
        .where(
            *_scope(kind, digest_date),
            DeliveryRow.status == DeliveryStatus.sending.value,
            DeliveryRow.claimed_at <= cutoff,
        )
        .values(status=DeliveryStatus.planned.value, claim_token=None, resends=DeliveryRow.resends + 1,
                next_attempt_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _due(kind: DeliveryKind, digest_date: date | None, ids: Sequence[int] | None,
         exclude: Collection[int]) -> ColumnElement[bool]:
    due = and_(
        *_scope(kind, digest_date),
        DeliveryRow.status == DeliveryStatus.planned.value,
        or_(DeliveryRow.next_attempt_at.is_(None), DeliveryRow.next_attempt_at <= utcnow()),
    )
    if ids is not None:
        due = and_(due, DeliveryRow.id.in_(list(ids)))
    if exclude:
        due = and_(due, DeliveryRow.id.not_in(list(exclude)))
    return due


def claim_batch(session: Session, digest_date: date | None, limit: int,
                kind: DeliveryKind = DeliveryKind.digest, ids: Sequence[int] | None = None,
                exclude: Collection[int] = ()) -> Batch:
    """Compare-and-set claim of up to ``limit`` due ``planned`` rows of ``kind`` (and ``digest_date``, and
    ``ids`` when given, never ``exclude``) under a new token. Two senders never claim one row: the UPDATE
    re-checks the status (and PostgreSQL skips rows another sender has locked). A digest whose subscriber
    is no longer active (unsubscribed or suppressed after planning) is marked ``skipped``, not claimed."""
    due = _due(kind, digest_date, ids, exclude)
    candidates = (
        select(DeliveryRow.id, SubscriberRow.status, SubscriberRow.email, SubscriberRow.name, SubscriberRow.link_key,
               SubscriberRow.frequency, SubscriberRow.thumbnails, SubscriberRow.plain_text)
        .join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
        .where(due).order_by(DeliveryRow.id).limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=DeliveryRow)
    token = secrets.token_hex(16)
    found = session.execute(candidates).all()
    gone: dict[str, list[int]] = {}
    live: dict[int, tuple[str, str | None, str, str, bool, bool]] = {}
    for delivery_id, status, email, name, link_key, frequency, thumbnails, plain_text in found:
        if kind is DeliveryKind.digest and status != SubscriberStatus.active.value:
            gone.setdefault(status, []).append(delivery_id)
        else:
            live[delivery_id] = (email, name, link_key, frequency, bool(thumbnails), bool(plain_text))
    skipped = 0
    now = utcnow()
    for status, delivery_ids in gone.items():
        result = session.execute(
            update(DeliveryRow).where(DeliveryRow.id.in_(delivery_ids), due)
            .values(status=DeliveryStatus.skipped.value, last_error=f"not sent: the subscriber is {status}",
                    updated_at=now)
            .execution_options(synchronize_session=False)
        )
        skipped += int(result.rowcount or 0)  # type: ignore[attr-defined]
    if not live:
        return Batch(token, (), skipped)
    claimed = session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(list(live)), due)
        .values(status=DeliveryStatus.sending.value, claim_token=token, claimed_at=now,
                attempts=DeliveryRow.attempts + 1, updated_at=now)
        .returning(DeliveryRow.id, DeliveryRow.subscriber_id, DeliveryRow.digest_date, DeliveryRow.attempts,
                   DeliveryRow.resends)
        .execution_options(synchronize_session=False)
    ).all()
    rows = sorted((Claimed(i, sid, day, attempts, resends, kind, token, *live[i])
                   for i, sid, day, attempts, resends in claimed), key=lambda c: c.delivery_id)
    return Batch(token, rows, skipped)


def _held(token: str) -> tuple[ColumnElement[bool], ...]:
    """The rows a claim still holds: a row released to another sender no longer matches."""
    return DeliveryRow.claim_token == token, DeliveryRow.status == DeliveryStatus.sending.value


def renew(session: Session, token: str) -> int:
    """Extend the lease of the rows still held under ``token`` (a heartbeat); returns how many it holds,
    fewer than expected when another sender took rows over after the lease ran out."""
    result = session.execute(
        update(DeliveryRow).where(*_held(token)).values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@lru_cache(maxsize=64)
def _mark_sent_statement(n: int) -> Update:
    """The UPDATE that records ``n`` accepted messages, built once per ``n`` with named parameters (``i0``,
    ``m0``, ...): a sender runs it every few messages, and building the statement cost more than running it."""
    t = DeliveryRow.__table__.c
    mids = case(*[(t.id == bindparam(f"i{k}"), bindparam(f"m{k}", type_=t.message_id.type)) for k in range(n)])
    now = bindparam("now", type_=t.sent_at.type)
    return (
        update(DeliveryRow.__table__)
        .where(t.id.in_([bindparam(f"i{k}") for k in range(n)]), t.claim_token == bindparam("token"),
               t.status == DeliveryStatus.sending.value)
        .values(status=DeliveryStatus.sent.value, message_id=mids, sent_at=now, claim_token=None,
                last_error=None, updated_at=now)
        .returning(t.id)
    )


def mark_sent(session: Session, token: str, sent: Mapping[int, str]) -> list[int]:
    """Record accepted messages (delivery id -> Message-ID) in one statement, only for rows still held
    under ``token``; returns the ids recorded. A row missing from the answer was taken over by another
    sender after this one's lease ran out: it is not this sender's to count."""
    if not sent:
        return []
    params: dict[str, object] = {"token": token, "now": utcnow()}
    for k, (delivery_id, mid) in enumerate(sent.items()):
        params[f"i{k}"] = delivery_id
        params[f"m{k}"] = mid
    return list(session.execute(_mark_sent_statement(len(sent)), params).scalars())


def _settle(session: Session, token: str, delivery_id: int, **values: object) -> bool:
    result = session.execute(
        update(DeliveryRow).where(DeliveryRow.id == delivery_id, *_held(token))
        .values(claim_token=None, updated_at=utcnow(), **values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_retry(session: Session, token: str, delivery_id: int, error: str, next_attempt_at: datetime) -> bool:
    """Back to ``planned``, due at ``next_attempt_at``; ``False`` when the row is no longer held."""
    return _settle(session, token, delivery_id, status=DeliveryStatus.planned.value, last_error=error,
                   next_attempt_at=next_attempt_at)


def mark_failed(session: Session, token: str, delivery_id: int, error: str,
                suppress_subscriber: int | None = None) -> bool:
    """``failed`` for good (and the subscriber suppressed, ``bounced``, when given and still active);
    ``False``, and nothing changed, when the row is no longer held."""
    if not _settle(session, token, delivery_id, status=DeliveryStatus.failed.value, last_error=error):
        return False
    if suppress_subscriber is not None:
        session.execute(
            update(SubscriberRow)
            .where(SubscriberRow.id == suppress_subscriber, SubscriberRow.status == SubscriberStatus.active.value)
            .values(status=SubscriberStatus.bounced.value, status_changed_at=utcnow())
        )
    return True


def release(session: Session, token: str, delivery_ids: Iterable[int], error: str | None = None) -> int:
    """Give claimed rows back as they were before the claim (a run that stops early); ``error`` is kept as
    the row's last error. Returns how many were still held."""
    ids = list(delivery_ids)
    if not ids:
        return 0
    values: dict[str, object] = {"status": DeliveryStatus.planned.value, "claim_token": None,
                                 "attempts": DeliveryRow.attempts - 1, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = error
    result = session.execute(
        update(DeliveryRow).where(DeliveryRow.id.in_(ids), *_held(token)).values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Waiting:
    """The ``planned`` rows of a scope that a sender could still send: how many, when the first is due
    (``None``: none), and the last error of that row."""

    count: int
    due: datetime | None
    last_error: str | None


def waiting(session: Session, digest_date: date | None, kind: DeliveryKind = DeliveryKind.digest,
            ids: Sequence[int] | None = None, exclude: Collection[int] = ()) -> Waiting:
    where = [*_scope(kind, digest_date), DeliveryRow.status == DeliveryStatus.planned.value]
    if ids is not None:
        where.append(DeliveryRow.id.in_(list(ids)))
    if exclude:
        where.append(DeliveryRow.id.not_in(list(exclude)))
    count = int(session.scalar(select(func.count()).where(*where)) or 0)
    if not count:
        return Waiting(0, None, None)
    first = session.execute(
        select(DeliveryRow.next_attempt_at, DeliveryRow.last_error).where(*where)
        .order_by(DeliveryRow.next_attempt_at.is_not(None), DeliveryRow.next_attempt_at).limit(1)
    ).first()
    if first is None:  # another sender claimed the last of them between the two statements
        return Waiting(0, None, None)
    return Waiting(count, first[0] or utcnow(), first[1])


def leased(session: Session, digest_date: date | None, lease: timedelta,
           kind: DeliveryKind = DeliveryKind.digest) -> tuple[int, datetime | None]:
    """Rows ``sending`` under some sender's claim, and when the last of those leases runs out (if its
    sender stops renewing it): ``(0, None)`` when there are none."""
    count, last = session.execute(
        select(func.count(), func.max(DeliveryRow.claimed_at))
        .where(*_scope(kind, digest_date), DeliveryRow.status == DeliveryStatus.sending.value)
    ).one()
    if not count or last is None:
        return 0, None
    last = last if last.tzinfo else last.replace(tzinfo=timezone.utc)
    return int(count), last + lease


def items_of_many(session: Session, delivery_ids: Iterable[int]) -> dict[int, list[Pick]]:
    """The ranked items of several deliveries in one query (a sender's batch), by delivery id."""
    ids = list(delivery_ids)
    out: dict[int, list[Pick]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(DeliveryItemRow.delivery_id, DeliveryItemRow.arxiv_id, DeliveryItemRow.rank, DeliveryItemRow.score,
               DeliveryItemRow.reason, DeliveryItemRow.evidence)
        .where(DeliveryItemRow.delivery_id.in_(ids)).order_by(DeliveryItemRow.delivery_id, DeliveryItemRow.rank)
    )
    for delivery_id, arxiv_id, rank, score, reason, evidence in rows:
        out[delivery_id].append(Pick(arxiv_id=arxiv_id, rank=rank, score=score, reason=reason, evidence=evidence))
    return out


def items_of(session: Session, delivery_id: int) -> list[Pick]:
    rows = session.scalars(
        select(DeliveryItemRow).where(DeliveryItemRow.delivery_id == delivery_id).order_by(DeliveryItemRow.rank)
    )
    return [Pick(arxiv_id=r.arxiv_id, rank=r.rank, score=r.score, reason=r.reason, evidence=r.evidence) for r in rows]


def status_counts(session: Session, digest_date: date | None,
                  kind: DeliveryKind = DeliveryKind.digest) -> dict[str, int]:
    rows = session.execute(
        select(DeliveryRow.status, func.count()).where(*_scope(kind, digest_date)).group_by(DeliveryRow.status)
    )
    return {status: int(n) for status, n in rows}


def offered_paper_ids(session: Session, subscriber_ids: Iterable[int], *, other_than: date | None = None,
                      listed_from: date | None = None) -> dict[int, set[str]]:
    """Per subscriber, every paper in any digest of theirs, whatever its status (planned, sent, failed...),
    except the digest of ``other_than``: never offered to them again. ``listed_from``: only papers listed
    on or after that date (older ones are outside every window being ranked)."""
    ids = list(subscriber_ids)
    out: dict[int, set[str]] = {i: set() for i in ids}
    for chunk in chunks(ids, IN_CHUNK):
        q = (
            select(DeliveryRow.subscriber_id, DeliveryItemRow.arxiv_id)
            .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
            .where(DeliveryRow.subscriber_id.in_(chunk), DeliveryRow.kind == DeliveryKind.digest.value)
        )
        if other_than is not None:
            q = q.where(DeliveryRow.digest_date != other_than)
        if listed_from is not None:
            q = q.join(PaperRow, PaperRow.arxiv_id == DeliveryItemRow.arxiv_id).where(
                PaperRow.listing_date >= listed_from)
        for sid, arxiv_id in session.execute(q):
            out[sid].add(arxiv_id)
    return out


@dataclass(frozen=True, slots=True)
class LastDigest:
    """A subscriber's latest digest before some date: its date, and when it was planned (ranked): papers
    stored after that moment were not yet there to be weighed for it."""

    digest_date: date
    planned_at: datetime


def last_digests(session: Session, subscriber_ids: Iterable[int], before: date) -> dict[int, LastDigest]:
    """Per subscriber, their latest digest dated before ``before``, whatever its status (a ``skipped`` one
    too: the day was weighed and nothing matched); absent when they never had one."""
    out: dict[int, LastDigest] = {}
    for chunk in chunks(list(subscriber_ids), IN_CHUNK):
        latest = (
            select(DeliveryRow.subscriber_id.label("sid"), func.max(DeliveryRow.digest_date).label("day"))
            .where(DeliveryRow.subscriber_id.in_(chunk), DeliveryRow.kind == DeliveryKind.digest.value,
                   DeliveryRow.digest_date < before)
            .group_by(DeliveryRow.subscriber_id).subquery()
        )
        rows = session.execute(
            select(DeliveryRow.subscriber_id, DeliveryRow.digest_date, DeliveryRow.created_at)
            .join(latest, and_(DeliveryRow.subscriber_id == latest.c.sid, DeliveryRow.digest_date == latest.c.day))
            .where(DeliveryRow.kind == DeliveryKind.digest.value)
        )
        for sid, day, planned_at in rows:
            if planned_at.tzinfo is None:  # SQLite keeps no offset: the value is UTC
                planned_at = planned_at.replace(tzinfo=timezone.utc)
            out[sid] = LastDigest(day, planned_at)
    return out
