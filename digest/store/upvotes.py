"""The upvote history of papers read as velocity: how many upvotes a paper gained recently, since when,
and per hour (the "rising" signal of the ranking)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.tables import UpvoteRow

_CHUNK = 500


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def upvote_rises(
    session: Session, arxiv_ids: Iterable[str], now: datetime, hours: float = 48.0
) -> dict[str, tuple[int, datetime, float]]:
    """``{arxiv_id: (gained, since, per_hour)}`` for the papers that gained upvotes over the last ``hours``
    before ``now``: from their last observation before that window (or their first observation, when they
    were first seen inside it) to their latest one. Papers that gained nothing are absent.

    Observations are written when a paper is first seen and whenever its count changes on a fetch, so a
    paper whose count did not move for days has its base observation further back: its velocity is then
    spread over that longer time (a conservative figure)."""
    now = _aware(now)
    start = now - timedelta(hours=hours)
    ids = list(dict.fromkeys(arxiv_ids))
    history: dict[str, list[tuple[datetime, int]]] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(UpvoteRow.arxiv_id, UpvoteRow.observed_at, UpvoteRow.upvotes)
            .where(UpvoteRow.arxiv_id.in_(ids[i : i + _CHUNK]), UpvoteRow.observed_at <= now)
            .order_by(UpvoteRow.arxiv_id, UpvoteRow.observed_at, UpvoteRow.id)
        )
        for aid, at, up in rows:
            history.setdefault(aid, []).append((_aware(at), int(up)))
    out: dict[str, tuple[int, datetime, float]] = {}
    for aid, obs in history.items():
        last_t, last_up = obs[-1]
        if last_t < start:
            continue  # nothing observed in the window
        before = [o for o in obs if o[0] <= start]
        base_t, base_up = before[-1] if before else obs[0]
        gained = last_up - base_up
        elapsed = (last_t - base_t).total_seconds() / 3600.0
        if gained > 0 and elapsed > 0:
            out[aid] = (gained, base_t, gained / max(elapsed, 1.0))
    return out
