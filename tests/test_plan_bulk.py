"""Planning in bulk on SQLite and PostgreSQL: the outbox written from the ranking's columns with
``INSERT ... ON CONFLICT DO NOTHING`` (a row another planner wrote stands, items and all), and the day's
plan streamed in chunks with the real model: every subscriber planned once, nothing twice, history read
per chunk, interests encoded only when missing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from digest import pipeline
from digest.config import Settings
from digest.models import Pick, PickColumns
from digest.sources.huggingface import load_listing_file
from digest.store import outbox, session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryItemRow, DeliveryRow

from .builders import API_2025_06_05, readers_with_picks, stored_id

pytestmark = pytest.mark.all_backends
DAY = date(2025, 6, 5)


def items(engine, day: date) -> dict[int, list[tuple[int, str, float, str]]]:  # type: ignore[no-untyped-def]
    with session_factory(engine)() as s:
        rows = s.execute(select(DeliveryRow.subscriber_id, DeliveryItemRow.rank, DeliveryItemRow.arxiv_id,
                                DeliveryItemRow.score, DeliveryItemRow.reason)
                         .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
                         .where(DeliveryRow.digest_date == day).order_by(DeliveryRow.subscriber_id,
                                                                         DeliveryItemRow.rank))
        out: dict[int, list[tuple[int, str, float, str]]] = {}
        for sid, rank, aid, score, reason in rows:
            out.setdefault(sid, []).append((rank, aid, score, reason))
    return out


def test_columns_plan_every_subscriber_once_and_leave_what_another_planner_wrote(settings: Settings) -> None:
    readers = readers_with_picks(settings, 6)
    engine, ids, picks = readers.engine, readers.ids, readers.picks
    picks[ids[5]] = []
    # Another planner was first for two subscribers, with other papers.
    other = {ids[0]: [Pick(readers.paper_ids[-1], 1, 0.5, "trending")], ids[5]: []}
    with session_factory(engine).begin() as s:
        first = outbox.plan_deliveries(s, DAY, other)
    assert (first.planned, first.skipped, first.existing) == (1, 1, 0)
    with session_factory(engine).begin() as s:
        report = outbox.plan_deliveries(s, DAY, PickColumns.from_picks(picks))
    assert (report.planned, report.skipped, report.existing) == (4, 0, 2)
    got = items(engine, DAY)
    assert got[ids[0]] == [(1, readers.paper_ids[-1], 0.5, "trending")]  # the first planner's row stands
    assert ids[5] not in got
    for sid in ids[1:5]:
        assert got[sid] == [(p.rank, p.arxiv_id, pytest.approx(p.score), p.reason) for p in picks[sid]]
    with session_factory(engine)() as s:
        assert outbox.status_counts(s, DAY) == {"planned": 5, "skipped": 1}
        assert s.scalar(select(func.count()).select_from(DeliveryItemRow)) == 1 + 4 * 3


@pytest.mark.slow
def test_plan_streams_chunks_and_never_repeats_a_paper(settings: Settings) -> None:
    """11 subscribers planned in chunks of 4 with the real model: every one gets a delivery, the same day
    planned again adds nothing, and the next day nobody gets a paper their sent digest had."""
    engine = pipeline.open_store(settings)
    listing = load_listing_file(API_2025_06_05)
    pipeline.store(engine, listing)
    topics = ["LLM reasoning", "video generation", "robot learning", "speech", "reinforcement learning"]
    with session_factory(engine).begin() as s:
        sids = [stored_id(add_subscriber(s, f"r{i}@example.org", interests=[topics[i % 5], f"topic {i}"],
                                         max_papers=4))
                for i in range(10)]
        sids.append(stored_id(add_subscriber(s, "trend@example.org", max_papers=3)))  # no interests: trending
    first = pipeline.plan(engine, settings, DAY, chunk_size=4)
    assert (first.planned, first.skipped, first.existing, first.embedded) == (11, 0, 0, 30)
    assert first.interests_embedded == 15  # 5 shared topics + 10 of their own, encoded once
    again = pipeline.plan(engine, settings, DAY, chunk_size=4)
    assert (again.planned, again.skipped, again.existing, again.interests_embedded) == (0, 0, 11, 0)
    day1 = items(engine, DAY)
    assert sorted(day1) == sorted(sids)
    assert all([r for r, *_ in v] == list(range(1, len(v) + 1)) for v in day1.values())
    assert all(len(day1[sid]) == 3 for sid in sids[-1:]) and all(p[3] == "trending" for p in day1[sids[-1]])
    # Day 1 is sent; day 2 (no new listing) may only offer what is left of the window.
    with session_factory(engine).begin() as s:
        batch = outbox.claim_batch(s, DAY, 100)
        outbox.mark_sent(s, batch.token, {c.delivery_id: f"<{c.delivery_id}@x>" for c in batch})
    nxt = DAY + timedelta(days=1)
    second = pipeline.plan(engine, settings, nxt, chunk_size=4)
    assert second.existing == 0 and second.planned + second.skipped == 11
    day2 = items(engine, nxt)
    for sid, picks in day2.items():
        assert not {aid for _, aid, *_ in picks} & {aid for _, aid, *_ in day1[sid]}, sid
