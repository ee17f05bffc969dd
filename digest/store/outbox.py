"""The outbox: every mail the product sends is a row here first. Digests are planned idempotently (one per
subscriber and date), confirmations are enqueued (at most one per subscriber and day); senders claim rows
with compare-and-set and record each outcome.

Every state change is its own short transaction, so a crash loses nothing: a row is ``planned`` until a
sender claims it (``sending``), and ``sent`` is committed right after the SMTP server accepts the message.
A row left ``sending`` by a dead sender is released after a lease and sent again with the same Message-ID.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import Pick
from digest.store.tables import DeliveryItemRow, DeliveryRow, SubscriberRow, utcnow


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
    delivery_id: int
    subscriber_id: int
    digest_date: date
    attempts: int
    resends: int
    kind: DeliveryKind = DeliveryKind.digest


def _scope(kind: DeliveryKind, digest_date: date | None) -> list[ColumnElement[bool]]:
    """The rows one sender works on: a kind, and for digests one date (``None``: every date)."""
    where = [DeliveryRow.kind == kind.value]
    if digest_date is not None:
        where.append(DeliveryRow.digest_date == digest_date)
    return where


def plan_deliveries(session: Session, digest_date: date, picks: Mapping[int, Sequence[Pick]]) -> PlanReport:
    """One delivery per subscriber for ``digest_date`` with its ranked items. Idempotent: a pair that
    exists is left untouched (also when another planner inserts it at the same moment)."""
    existing_ids = set(
        session.scalars(
            select(DeliveryRow.subscriber_id).where(
                *_scope(DeliveryKind.digest, digest_date), DeliveryRow.subscriber_id.in_(list(picks))
            )
        )
    )
    planned = skipped = 0
    existing = len(existing_ids)
    now = utcnow()
    for subscriber_id, sub_picks in picks.items():
        if subscriber_id in existing_ids:
            continue
        status = DeliveryStatus.planned if sub_picks else DeliveryStatus.skipped
        row = DeliveryRow(
            subscriber_id=subscriber_id, digest_date=digest_date, kind=DeliveryKind.digest.value,
            status=status.value, attempts=0, resends=0, created_at=now, updated_at=now,
            items=[DeliveryItemRow(rank=p.rank, arxiv_id=p.arxiv_id, score=float(p.score), reason=p.reason)
                   for p in sub_picks],
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another planner got there first: that row stands
            existing += 1
            continue
        if sub_picks:
            planned += 1
        else:
            skipped += 1
    return PlanReport(planned=planned, skipped=skipped, existing=existing)


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
    """Rows left ``sending`` longer than ``lease`` (their sender died) go back to ``planned``; returns how
    many, which is how many messages may be sent a second time."""
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


def claim_batch(session: Session, digest_date: date | None, limit: int,
                kind: DeliveryKind = DeliveryKind.digest, ids: Sequence[int] | None = None) -> list[Claimed]:
    """Compare-and-set claim of up to ``limit`` due ``planned`` rows of ``kind`` (and ``digest_date``,
    and ``ids`` when given). Two senders never claim one row: the UPDATE re-checks the status (and
    PostgreSQL skips rows another sender has locked)."""
    now = utcnow()
    due = and_(
        *_scope(kind, digest_date),
        DeliveryRow.status == DeliveryStatus.planned.value,
        or_(DeliveryRow.next_attempt_at.is_(None), DeliveryRow.next_attempt_at <= now),
    )
    if ids is not None:
        due = and_(due, DeliveryRow.id.in_(list(ids)))
    candidates = select(DeliveryRow.id).where(due).order_by(DeliveryRow.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    token = secrets.token_hex(16)
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(ids), due)
        .values(status=DeliveryStatus.sending.value, claim_token=token, claimed_at=now,
                attempts=DeliveryRow.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(DeliveryRow.id, DeliveryRow.subscriber_id, DeliveryRow.digest_date, DeliveryRow.attempts,
               DeliveryRow.resends)
        .where(DeliveryRow.claim_token == token, DeliveryRow.status == DeliveryStatus.sending.value)
        .order_by(DeliveryRow.id)
    )
    return [Claimed(*r, kind=kind) for r in rows]


def _set(session: Session, delivery_id: int, **values: object) -> None:
    session.execute(
        update(DeliveryRow).where(DeliveryRow.id == delivery_id)
        .values(updated_at=utcnow(), **values).execution_options(synchronize_session=False)
    )


def mark_sent(session: Session, delivery_id: int, message_id: str) -> None:
    _set(session, delivery_id, status=DeliveryStatus.sent.value, message_id=message_id, sent_at=utcnow(),
         claim_token=None, last_error=None)


def mark_retry(session: Session, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
    _set(session, delivery_id, status=DeliveryStatus.planned.value, claim_token=None, last_error=error,
         next_attempt_at=next_attempt_at)


def mark_failed(session: Session, delivery_id: int, error: str, suppress_subscriber: int | None = None) -> None:
    _set(session, delivery_id, status=DeliveryStatus.failed.value, claim_token=None, last_error=error)
    if suppress_subscriber is not None:
        session.execute(
            update(SubscriberRow).where(SubscriberRow.id == suppress_subscriber, SubscriberRow.status != "bounced")
            .values(status="bounced", status_changed_at=utcnow())
        )


def release(session: Session, delivery_ids: Iterable[int]) -> None:
    """Give claimed rows back untouched (a run that stops early)."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(ids), DeliveryRow.status == DeliveryStatus.sending.value)
            .values(status=DeliveryStatus.planned.value, claim_token=None,
                    attempts=DeliveryRow.attempts - 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def next_due(session: Session, digest_date: date | None, kind: DeliveryKind = DeliveryKind.digest,
             ids: Sequence[int] | None = None) -> datetime | None:
    """When the earliest ``planned`` row of the scope becomes due (None: nothing left to send)."""
    where = [*_scope(kind, digest_date), DeliveryRow.status == DeliveryStatus.planned.value]
    if ids is not None:
        where.append(DeliveryRow.id.in_(list(ids)))
    rows = session.execute(select(func.count(), func.min(DeliveryRow.next_attempt_at)).where(*where)).one()
    if not rows[0]:
        return None
    return rows[1] or utcnow()


def items_of(session: Session, delivery_id: int) -> list[Pick]:
    rows = session.scalars(
        select(DeliveryItemRow).where(DeliveryItemRow.delivery_id == delivery_id).order_by(DeliveryItemRow.rank)
    )
    return [Pick(arxiv_id=r.arxiv_id, rank=r.rank, score=r.score, reason=r.reason) for r in rows]


def status_counts(session: Session, digest_date: date | None,
                  kind: DeliveryKind = DeliveryKind.digest) -> dict[str, int]:
    rows = session.execute(
        select(DeliveryRow.status, func.count()).where(*_scope(kind, digest_date)).group_by(DeliveryRow.status)
    )
    return {status: int(n) for status, n in rows}


# Statuses whose papers count as mailed (or about to be) for the "never twice" rule.
_COMMITTED = (DeliveryStatus.sent.value, DeliveryStatus.sending.value, DeliveryStatus.planned.value)


def sent_paper_ids(session: Session, subscriber_ids: Iterable[int], before: date | None = None) -> dict[int, set[str]]:
    """Per subscriber, every paper in a sent (or planned, in flight) delivery of another date: never
    picked again."""
    ids = list(subscriber_ids)
    q = (
        select(DeliveryRow.subscriber_id, DeliveryItemRow.arxiv_id)
        .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
        .where(DeliveryRow.subscriber_id.in_(ids), DeliveryRow.kind == DeliveryKind.digest.value,
               DeliveryRow.status.in_(_COMMITTED))
    )
    if before is not None:
        q = q.where(DeliveryRow.digest_date < before)
    out: dict[int, set[str]] = {i: set() for i in ids}
    for sid, arxiv_id in session.execute(q):
        out[sid].add(arxiv_id)
    return out


def last_digest_dates(session: Session, subscriber_ids: Iterable[int], before: date) -> dict[int, date]:
    """Per subscriber, the date of their last sent digest before ``before`` (absent: never mailed)."""
    ids = list(subscriber_ids)
    rows = session.execute(
        select(DeliveryRow.subscriber_id, func.max(DeliveryRow.digest_date))
        .where(DeliveryRow.subscriber_id.in_(ids), DeliveryRow.kind == DeliveryKind.digest.value,
               DeliveryRow.status == DeliveryStatus.sent.value, DeliveryRow.digest_date < before)
        .group_by(DeliveryRow.subscriber_id)
    )
    return {sid: d for sid, d in rows}
