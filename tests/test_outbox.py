"""The outbox on SQLite and PostgreSQL: idempotent planning, compare-and-set claims, lease release."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import event

from digest.config import Settings
from digest.store import session_factory
from digest.store import outbox

from .builders import readers_with_picks

pytestmark = pytest.mark.all_backends
DAY = date(2025, 6, 5)


def test_planning_is_idempotent(settings: Settings) -> None:
    readers = readers_with_picks(settings, 5)
    engine, subs, picks = readers.engine, readers.ids, readers.picks
    picks[subs[0]] = []
    with session_factory(engine).begin() as s:
        first = outbox.plan_deliveries(s, DAY, picks)
    assert (first.planned, first.skipped, first.existing) == (4, 1, 0)
    with session_factory(engine).begin() as s:
        again = outbox.plan_deliveries(s, DAY, picks)
    assert (again.planned, again.skipped, again.existing) == (0, 0, 5)
    with session_factory(engine)() as s:
        assert outbox.status_counts(s, DAY) == {"planned": 4, "skipped": 1}
        assert [p.rank for p in outbox.items_of(s, 1)] in ([], [1, 2, 3])


def test_concurrent_claims_never_share_a_row(settings: Settings) -> None:
    readers = readers_with_picks(settings, 40)
    engine = readers.engine
    with session_factory(engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    claimed: list[list[int]] = [[], [], [], []]

    def claimer(k: int) -> None:
        while True:
            with session_factory(engine).begin() as s:
                batch = outbox.claim_batch(s, DAY, 3)
            if not batch:
                return
            claimed[k].extend(c.delivery_id for c in batch)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [d for part in claimed for d in part]
    assert len(everything) == 40 and len(set(everything)) == 40


def test_waiting_rows_claimed_by_another_sender_meanwhile_are_none_left(settings: Settings) -> None:
    """``waiting`` counts the rows, then reads the first one due: a sender in another process may claim the
    last of them between the two statements (PostgreSQL: each statement sees what is committed). Then none
    is waiting; before, the second read raised NoResultFound and killed a two-sender run."""
    readers = readers_with_picks(settings, 3)
    engine = readers.engine
    with session_factory(engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    claimed: list[int] = []

    def claim_all_after_the_count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "count(" in statement.lower() and not claimed:
            with session_factory(engine).begin() as other:
                claimed.extend(c.delivery_id for c in outbox.claim_batch(other, DAY, 10))

    event.listen(engine, "after_cursor_execute", claim_all_after_the_count)
    try:
        with session_factory(engine).begin() as s:
            w = outbox.waiting(s, DAY)
    finally:
        event.remove(engine, "after_cursor_execute", claim_all_after_the_count)
    assert len(claimed) == 3
    assert w == outbox.Waiting(0, None, None)  # the second read saw the claim: nothing waits
    with session_factory(engine).begin() as s:
        assert outbox.waiting(s, DAY) == outbox.Waiting(0, None, None)


def test_expired_lease_is_released_and_counted(settings: Settings) -> None:
    readers = readers_with_picks(settings, 5)
    engine = readers.engine
    with session_factory(engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    with session_factory(engine).begin() as s:
        batch = outbox.claim_batch(s, DAY, 2)
    assert len(batch) == 2
    with session_factory(engine).begin() as s:
        assert outbox.release_expired(s, DAY, timedelta(hours=1)) == 0  # still leased
        assert outbox.release_expired(s, DAY, timedelta(seconds=0)) == 2
    with session_factory(engine).begin() as s:
        again = outbox.claim_batch(s, DAY, 10)
    assert {c.delivery_id for c in batch} <= {c.delivery_id for c in again}
    assert max(c.resends for c in again) == 1


def test_offered_papers_and_last_digests_whatever_their_status(settings: Settings) -> None:
    readers = readers_with_picks(settings, 2)
    engine, subs, picks = readers.engine, readers.ids, readers.picks
    with session_factory(engine).begin() as s:
        outbox.plan_deliveries(s, DAY, picks)
        batch = outbox.claim_batch(s, DAY, 1)
        outbox.mark_failed(s, batch.token, batch[0].delivery_id, "550 5.7.1 rejected")  # one failed, one planned
    with session_factory(engine)() as s:
        offered = outbox.offered_paper_ids(s, subs, other_than=DAY + timedelta(days=1))
        assert offered == {sid: {p.arxiv_id for p in picks[sid]} for sid in subs}
        assert outbox.offered_paper_ids(s, subs, other_than=DAY) == {sid: set() for sid in subs}
        assert outbox.offered_paper_ids(s, subs, listed_from=DAY + timedelta(days=1)) == {sid: set() for sid in subs}
        last = outbox.last_digests(s, subs, before=DAY + timedelta(days=3))
        assert {sid: d.digest_date for sid, d in last.items()} == {sid: DAY for sid in subs}
        assert all(d.planned_at.tzinfo is not None for d in last.values())
        assert outbox.last_digests(s, subs, before=DAY) == {}


