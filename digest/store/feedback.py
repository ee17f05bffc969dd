"""Repository functions for feedback: one vote per (subscriber, paper), the latest one wins."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import normalise_arxiv_id
from digest.store.tables import FeedbackRow, utcnow


def record_feedback(session: Session, subscriber_id: int, arxiv_id: str, value: int) -> None:
    """Store +1 ("more like this") or -1 ("less like this"); a later, different vote replaces an earlier
    one. Repeating a vote changes nothing, not even its time: a vote's weight decays with its age, and
    clicking the same link again must not renew it."""
    if value not in (1, -1):
        raise ValueError(f"feedback must be +1 or -1, not {value}")
    arxiv_id = normalise_arxiv_id(arxiv_id)
    row = session.scalar(
        select(FeedbackRow).where(FeedbackRow.subscriber_id == subscriber_id, FeedbackRow.arxiv_id == arxiv_id)
    )
    if row is None:
        session.add(FeedbackRow(subscriber_id=subscriber_id, arxiv_id=arxiv_id, value=value, created_at=utcnow()))
    elif row.value != value:
        row.value = value
        row.created_at = utcnow()
    session.flush()


def feedback_for(session: Session, subscriber_ids: Iterable[int]) -> dict[int, list[tuple[str, int]]]:
    """``{subscriber_id: [(arxiv_id, +1|-1), ...]}`` oldest vote first; subscribers without votes absent."""
    ids = list(subscriber_ids)
    out: dict[int, list[tuple[str, int]]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.execute(
            select(FeedbackRow.subscriber_id, FeedbackRow.arxiv_id, FeedbackRow.value)
            .where(FeedbackRow.subscriber_id.in_(chunk))
            .order_by(FeedbackRow.subscriber_id, FeedbackRow.created_at, FeedbackRow.id)
        )
        for sid, aid, value in rows:
            out.setdefault(sid, []).append((aid, int(value)))
    return out


def votes_for(session: Session, subscriber_ids: Iterable[int]) -> dict[int, list[tuple[str, int, datetime]]]:
    """``{subscriber_id: [(arxiv_id, +1|-1, when), ...]}`` oldest vote first (``when`` in UTC);
    subscribers without votes absent."""
    ids = list(subscriber_ids)
    out: dict[int, list[tuple[str, int, datetime]]] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(FeedbackRow.subscriber_id, FeedbackRow.arxiv_id, FeedbackRow.value, FeedbackRow.created_at)
            .where(FeedbackRow.subscriber_id.in_(ids[start : start + 500]))
            .order_by(FeedbackRow.subscriber_id, FeedbackRow.created_at, FeedbackRow.id)
        )
        for sid, aid, value, when in rows:
            when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
            out.setdefault(sid, []).append((aid, int(value), when))
    return out
