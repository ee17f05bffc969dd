"""What the web archive and the feeds read: a subscriber's digests as the outbox holds them (the same papers,
ranks and reasons as the mail), their sent digests newest first, the papers picked for them, and the days
of the stored listing. Read-only: nothing here changes the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from digest.models import Pick
from digest.store.outbox import DeliveryKind, DeliveryStatus
from digest.store.tables import DeliveryItemRow, DeliveryRow, PaperRow


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """One digest of one subscriber: its outbox row and ranked items."""

    delivery_id: int
    digest_date: date
    status: str
    sent_at: datetime | None
    picks: tuple[Pick, ...]


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """A line of the archive page: a sent digest, how many papers it held and its top paper's title."""

    digest_date: date
    sent_at: datetime | None
    papers: int
    top_title: str | None


@dataclass(frozen=True, slots=True)
class PickedPaper:
    """A paper picked for a subscriber in a sent digest (an entry of their feed)."""

    digest_date: date
    pick: Pick


def digest_of(session: Session, subscriber_id: int, digest_date: date) -> DigestRecord | None:
    """The subscriber's digest of ``digest_date`` (any status), or ``None`` when there is none."""
    row = session.execute(
        select(DeliveryRow.id, DeliveryRow.status, DeliveryRow.sent_at).where(
            DeliveryRow.subscriber_id == subscriber_id, DeliveryRow.digest_date == digest_date,
            DeliveryRow.kind == DeliveryKind.digest.value)
    ).one_or_none()
    if row is None:
        return None
    delivery_id, status, sent_at = row
    picks = tuple(
        Pick(arxiv_id=a, rank=r, score=s, reason=why, evidence=ev)
        for a, r, s, why, ev in session.execute(
            select(DeliveryItemRow.arxiv_id, DeliveryItemRow.rank, DeliveryItemRow.score, DeliveryItemRow.reason,
                   DeliveryItemRow.evidence)
            .where(DeliveryItemRow.delivery_id == delivery_id).order_by(DeliveryItemRow.rank))
    )
    return DigestRecord(delivery_id, digest_date, status, sent_at, picks)


def _sent(subscriber_id: int) -> tuple[ColumnElement[bool], ...]:
    return (DeliveryRow.subscriber_id == subscriber_id, DeliveryRow.kind == DeliveryKind.digest.value,
            DeliveryRow.status == DeliveryStatus.sent.value)


def count_sent_digests(session: Session, subscriber_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(DeliveryRow).where(*_sent(subscriber_id))) or 0)


def sent_digests(session: Session, subscriber_id: int, *, limit: int, offset: int = 0) -> list[ArchiveEntry]:
    """The subscriber's sent digests, newest first: ``limit`` of them after skipping ``offset``."""
    rows = session.execute(
        select(DeliveryRow.id, DeliveryRow.digest_date, DeliveryRow.sent_at).where(*_sent(subscriber_id))
        .order_by(DeliveryRow.digest_date.desc()).limit(limit).offset(offset)
    ).all()
    ids = [r[0] for r in rows]
    counts: dict[int, int] = {i: 0 for i in ids}
    tops: dict[int, str] = {}
    if ids:
        items = session.execute(
            select(DeliveryItemRow.delivery_id, PaperRow.title)
            .join(PaperRow, PaperRow.arxiv_id == DeliveryItemRow.arxiv_id)
            .where(DeliveryItemRow.delivery_id.in_(ids)).order_by(DeliveryItemRow.delivery_id, DeliveryItemRow.rank)
        )
        for delivery_id, title in items:
            counts[delivery_id] += 1
            tops.setdefault(delivery_id, title)
    return [ArchiveEntry(day, sent_at, counts[i], tops.get(i)) for i, day, sent_at in rows]


def picked_papers(session: Session, subscriber_id: int, *, limit: int) -> list[PickedPaper]:
    """The papers of the subscriber's sent digests, newest digest first and in rank order within one,
    at most ``limit``."""
    rows = session.execute(
        select(DeliveryRow.digest_date, DeliveryItemRow.arxiv_id, DeliveryItemRow.rank, DeliveryItemRow.score,
               DeliveryItemRow.reason, DeliveryItemRow.evidence)
        .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
        .where(*_sent(subscriber_id))
        .order_by(DeliveryRow.digest_date.desc(), DeliveryItemRow.rank).limit(limit)
    )
    return [PickedPaper(day, Pick(arxiv_id=a, rank=r, score=s, reason=why, evidence=ev))
            for day, a, r, s, why, ev in rows]


# -- the days of the listing --------------------------------------------------------------------------


def latest_listing_date(session: Session) -> date | None:
    """The newest listing date with a stored paper, or ``None`` when no paper is stored."""
    return session.scalar(select(func.max(PaperRow.listing_date)))


def neighbour_listing_dates(session: Session, day: date) -> tuple[date | None, date | None]:
    """The listing dates with stored papers just before and just after ``day`` (``None``: no such day)."""
    before = session.scalar(select(func.max(PaperRow.listing_date)).where(PaperRow.listing_date < day))
    after = session.scalar(select(func.min(PaperRow.listing_date)).where(PaperRow.listing_date > day))
    return before, after


__all__ = [
    "ArchiveEntry", "DigestRecord", "PickedPaper", "count_sent_digests", "digest_of", "latest_listing_date",
    "neighbour_listing_dates", "picked_papers", "sent_digests",
]
