"""Claims, leases and compare-and-set outcomes on a real SQLite file: a sender only ever records what it
still holds, renews what it holds, and a planned digest whose subscriber left is never claimed."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from digest.config import Settings
from digest.store import outbox, session_factory
from digest.store.subscribers import unsubscribe_subscriber
from digest.store.tables import DeliveryRow, SubscriberRow, utcnow

from .builders import Readers, readers_with_picks

DAY = date(2025, 6, 5)


def planned(settings: Settings, n: int) -> Readers:
    readers = readers_with_picks(settings, n)
    with session_factory(readers.engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    return readers


def test_a_digest_whose_subscriber_left_is_skipped_not_claimed(settings: Settings) -> None:
    readers = planned(settings, 4)
    with session_factory(readers.engine).begin() as s:
        unsubscribe_subscriber(s, readers.ids[1])
    with session_factory(readers.engine).begin() as s:
        batch = outbox.claim_batch(s, DAY, 10)
    assert sorted(c.subscriber_id for c in batch) == sorted(set(readers.ids) - {readers.ids[1]})
    assert batch.skipped == 1
    assert {c.email for c in batch} == set(readers.emails) - {readers.emails[1]}
    with session_factory(readers.engine)() as s:
        row = s.scalars(select(DeliveryRow).where(DeliveryRow.subscriber_id == readers.ids[1])).one()
    assert row.status == "skipped" and "unsubscribed" in (row.last_error or "")


def test_marking_is_compare_and_set_on_the_claim(settings: Settings) -> None:
    readers = planned(settings, 3)
    sessions = session_factory(readers.engine)
    with sessions.begin() as s:
        first = outbox.claim_batch(s, DAY, 10)
    with sessions.begin() as s:  # the first sender stalls past its lease: another takes the rows over
        assert outbox.release_expired(s, DAY, timedelta(seconds=0)) == 3
    with sessions.begin() as s:
        second = outbox.claim_batch(s, DAY, 10)
    assert second.token != first.token and len(second) == 3
    sent = {c.delivery_id: f"<m{c.delivery_id}@x>" for c in first}
    with sessions.begin() as s:
        assert outbox.mark_sent(s, first.token, sent) == [], "a sender that lost its claim records nothing"
        assert not outbox.mark_failed(s, first.token, first[0].delivery_id, "5.1.1 no such user",
                                      suppress_subscriber=first[0].subscriber_id)
        assert not outbox.mark_retry(s, first.token, first[1].delivery_id, "451 later", utcnow())
        assert outbox.renew(s, first.token) == 0
    with sessions.begin() as s:
        assert sorted(outbox.mark_sent(s, second.token, sent)) == sorted(sent)
    with sessions() as s:
        assert outbox.status_counts(s, DAY) == {"sent": 3}
        assert s.scalars(select(SubscriberRow.status)).all() == ["active"] * 3


def test_renewing_extends_the_lease_of_the_rows_held(settings: Settings) -> None:
    readers = planned(settings, 5)
    sessions = session_factory(readers.engine)
    with sessions.begin() as s:
        batch = outbox.claim_batch(s, DAY, 2)
    with sessions.begin() as s:
        s.execute(DeliveryRow.__table__.update().values(claimed_at=utcnow() - timedelta(seconds=100)))
        assert outbox.renew(s, batch.token) == 2
        assert outbox.release_expired(s, DAY, timedelta(seconds=50)) == 0, "renewed: not expired"
    with sessions() as s:
        count, until = outbox.leased(s, DAY, timedelta(seconds=50))
    assert count == 2 and until is not None
    assert timedelta(seconds=40) < until - utcnow() <= timedelta(seconds=50)
    with sessions.begin() as s:
        assert outbox.release(s, batch.token, [c.delivery_id for c in batch]) == 2
    with sessions() as s:
        assert outbox.leased(s, DAY, timedelta(seconds=50)) == (0, None)
        assert outbox.status_counts(s, DAY) == {"planned": 5}
