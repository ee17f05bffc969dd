"""Read-only views of the outbox for the operator (`digest status`, `digest subscribers show`): counts by date
and status, the failures with their last error, one subscriber's recent mails. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from digest.store.tables import DeliveryItemRow, DeliveryRow, SubscriberRow


def counts_by_date(session: Session, limit: int = 7, kind: str = "digest",
                   until: date | None = None) -> list[tuple[date, dict[str, int]]]:
    """The last ``limit`` dates (up to ``until``) that have deliveries of ``kind``, newest first, each with
    its counts by status."""
    q = select(DeliveryRow.digest_date).where(DeliveryRow.kind == kind)
    if until is not None:
        q = q.where(DeliveryRow.digest_date <= until)
    dates = list(session.scalars(q.group_by(DeliveryRow.digest_date)
                                 .order_by(DeliveryRow.digest_date.desc()).limit(limit)))
    if not dates:
        return []
    rows = session.execute(
        select(DeliveryRow.digest_date, DeliveryRow.status, func.count())
        .where(DeliveryRow.kind == kind, DeliveryRow.digest_date.in_(dates))
        .group_by(DeliveryRow.digest_date, DeliveryRow.status)
    )
    out: dict[date, dict[str, int]] = {d: {} for d in dates}
    for d, status, n in rows:
        out[d][status] = int(n)
    return [(d, out[d]) for d in dates]


def counts_by_kind(session: Session, digest_date: date) -> dict[str, dict[str, int]]:
    """Every mail of ``digest_date`` (digests, confirmations) counted by kind and status."""
    out: dict[str, dict[str, int]] = {}
    for kind, status, n in session.execute(
        select(DeliveryRow.kind, DeliveryRow.status, func.count())
        .where(DeliveryRow.digest_date == digest_date).group_by(DeliveryRow.kind, DeliveryRow.status)
    ):
        out.setdefault(kind, {})[status] = int(n)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """A mail that failed for good, or is waiting for another attempt after an error."""

    email: str
    digest_date: date
    kind: str
    status: str
    attempts: int
    last_error: str
    updated_at: datetime | None


def problems(session: Session, since: date | None = None, limit: int = 20) -> list[Problem]:
    """Failed mails and mails retrying after an error (``planned`` with a last error), newest first."""
    q = (
        select(SubscriberRow.email, DeliveryRow.digest_date, DeliveryRow.kind, DeliveryRow.status,
               DeliveryRow.attempts, DeliveryRow.last_error, DeliveryRow.updated_at)
        .join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
        .where(or_(DeliveryRow.status == "failed",
                   (DeliveryRow.status == "planned") & DeliveryRow.last_error.is_not(None)))
        .order_by(DeliveryRow.updated_at.desc(), DeliveryRow.id.desc())
        .limit(limit)
    )
    if since is not None:
        q = q.where(DeliveryRow.digest_date >= since)
    return [Problem(e, d, k, s, a or 0, err or "", u) for e, d, k, s, a, err, u in session.execute(q)]


@dataclass(frozen=True, slots=True)
class MailLine:
    digest_date: date
    kind: str
    status: str
    papers: int
    attempts: int
    sent_at: datetime | None
    last_error: str | None


def mails_of(session: Session, subscriber_id: int, limit: int = 10) -> list[MailLine]:
    """A subscriber's last ``limit`` mails (digests and confirmations), newest first."""
    papers = (select(func.count()).where(DeliveryItemRow.delivery_id == DeliveryRow.id)
              .correlate(DeliveryRow).scalar_subquery())
    rows = session.execute(
        select(DeliveryRow.digest_date, DeliveryRow.kind, DeliveryRow.status, papers, DeliveryRow.attempts,
               DeliveryRow.sent_at, DeliveryRow.last_error)
        .where(DeliveryRow.subscriber_id == subscriber_id)
        .order_by(DeliveryRow.digest_date.desc(), DeliveryRow.id.desc()).limit(limit)
    )
    return [MailLine(d, k, s, int(n), a or 0, t, e) for d, k, s, n, a, t, e in rows]
