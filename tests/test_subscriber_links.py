"""What the subscribers table holds for the links: ids never given out twice, a random link key per
subscriber, when the status last changed, a sign-up's pending preferences; and the migration that adds
them to a database in use, on a real SQLite file (or the DIGEST_TEST_DATABASE_URL database)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import Engine, func, insert, select, text

from digest.config import Settings
from digest.models import Paper, SubscriberStatus
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.db import current_revision
from digest.store.feedback import record_feedback
from digest.store.outbox import DeliveryKind, claim_batch, enqueue_confirmation, mark_failed
from digest.store.subscribers import (
    add_subscriber,
    confirm_subscriber,
    find_subscriber,
    remove_subscriber,
    request_subscription,
    subscriber_for_link,
    unsubscribe_subscriber,
)
from digest.store.tables import DeliveryRow, FeedbackRow, SubscriberRow

from .builders import stored_id

PAPER = Paper("2506.01234", "A paper", "An abstract.", ("Ada",), date(2026, 8, 18))


def _engine(settings: Settings) -> Engine:
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    return engine


def test_ids_are_never_given_out_twice(settings: Settings) -> None:
    sessions = session_factory(_engine(settings))
    seen: list[int] = []
    for i in range(5):  # add, remove, add again: the newest id is removed every time
        with sessions.begin() as s:
            seen.append(stored_id(add_subscriber(s, f"person{i}@example.org")))
        with sessions.begin() as s:
            remove_subscriber(s, f"person{i}@example.org")
    assert len(set(seen)) == 5, seen


def test_every_subscriber_gets_its_own_random_link_key(settings: Settings) -> None:
    sessions = session_factory(_engine(settings))
    with sessions.begin() as s:
        subs = [add_subscriber(s, f"k{i}@example.org") for i in range(20)]
    keys = [sub.link_key for sub in subs]
    assert all(k and len(k) >= 22 for k in keys) and len(set(keys)) == 20  # 128 random bits each
    with sessions() as s:
        sid = stored_id(subs[0])
        assert subscriber_for_link(s, sid, keys[0]) == find_subscriber(s, sid)
        assert subscriber_for_link(s, sid, keys[1]) is None
        assert subscriber_for_link(s, sid, "é") is None  # any string from a token, never an exception
        assert subscriber_for_link(s, 10_000, keys[0]) is None


def test_bulk_inserts_get_a_key_and_a_status_time_too(settings: Settings) -> None:
    """A chunked bulk insert (the CSV import) that names neither column still gets both, per row."""
    engine = _engine(settings)
    with engine.begin() as conn:
        conn.execute(insert(SubscriberRow), [
            {"email": f"bulk{i}@example.org", "status": "active", "interests": [], "negative_interests": [],
             "include_keywords": [], "exclude_keywords": [], "seed_papers": [], "max_papers": 10,
             "frequency": "daily", "timezone": "UTC", "created_at": datetime.now(timezone.utc)}
            for i in range(3)])
    with session_factory(engine)() as s:
        rows = list(s.scalars(select(SubscriberRow)))
    assert len({r.link_key for r in rows}) == 3 and all(r.status_changed_at for r in rows)


def test_every_status_change_records_when(settings: Settings) -> None:
    sessions = session_factory(_engine(settings))
    with sessions.begin() as s:
        sid = stored_id(add_subscriber(s, "t@example.org", status=SubscriberStatus.pending))
    times = []
    for change in (confirm_subscriber, unsubscribe_subscriber):
        with sessions() as s:
            before = find_subscriber(s, sid)
        with sessions.begin() as s:
            change(s, sid)
        with sessions() as s:
            after = find_subscriber(s, sid)
        assert before and after and before.status_changed_at and after.status_changed_at
        assert after.status_changed_at > before.status_changed_at, change.__name__
        times.append(after.status_changed_at)
    with sessions.begin() as s:  # no change of status, no new time
        unsubscribe_subscriber(s, sid)
    with sessions() as s:
        assert (found := find_subscriber(s, sid)) and found.status_changed_at == times[-1]
    with sessions.begin() as s:  # the sender suppressing a refused address
        confirm_subscriber(s, sid)
        delivery = enqueue_confirmation(s, sid, date(2026, 11, 2))
        assert delivery is not None
    with sessions() as s:
        before = find_subscriber(s, sid)
    with sessions.begin() as s:  # the sender holds the row, as it does when the server refuses it
        batch = claim_batch(s, None, 10, DeliveryKind.confirm, ids=[delivery])
        assert [c.delivery_id for c in batch] == [delivery]
        assert mark_failed(s, batch.token, delivery, "550 5.1.1 no such user", suppress_subscriber=sid)
    with sessions() as s:
        after = find_subscriber(s, sid)
    assert before and after and after.status == "bounced"
    assert before.status_changed_at and after.status_changed_at and after.status_changed_at > before.status_changed_at


def test_a_known_address_signing_up_again_waits_for_the_confirmation(settings: Settings) -> None:
    sessions = session_factory(_engine(settings))
    with sessions.begin() as s:
        sid = stored_id(add_subscriber(s, "back@example.org", interests=["robotics"], max_papers=10,
                                       status=SubscriberStatus.unsubscribed))
    with sessions.begin() as s:
        assert request_subscription(s, "Back@example.org", ["video diffusion", " LLM  reasoning"], 5) == sid
    with sessions() as s:
        sub = find_subscriber(s, sid)
    assert sub and (sub.status, sub.interests, sub.max_papers) == ("unsubscribed", ("robotics",), 10)
    assert (sub.pending_interests, sub.pending_max_papers) == (("video diffusion", "LLM reasoning"), 5)
    with sessions.begin() as s:
        confirmed = confirm_subscriber(s, sid)
    assert confirmed and (confirmed.status, confirmed.interests, confirmed.max_papers) == (
        "active", ("video diffusion", "LLM reasoning"), 5)
    assert (confirmed.pending_interests, confirmed.pending_max_papers) == (None, None)


def test_migration_keeps_every_row_and_foreign_key(settings: Settings) -> None:
    """A database in use at 0004 (subscribers with deliveries and feedback, one removed) migrates to head:
    nothing is lost, not even through the foreign keys' ON DELETE CASCADE while SQLite rebuilds the table,
    and from then on ids are never reused."""
    engine = create_db_engine(settings.database_url)
    upgrade(engine, "0004")
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        for i in range(1, 5):
            conn.execute(text(
                "INSERT INTO subscribers (email, status, interests, negative_interests, include_keywords, "
                "exclude_keywords, seed_papers, max_papers, frequency, timezone, created_at, confirmed_at) "
                "VALUES (:e, 'active', '[\"x\"]', '[]', '[]', '[]', '[]', 10, 'daily', 'UTC', :c, :f)"),
                {"e": f"old{i}@example.org", "c": now, "f": now if i % 2 else None})
        # the paper as 0004 stores it (the ORM maps the columns later migrations add to papers)
        conn.execute(text(
            "INSERT INTO papers (arxiv_id, title, abstract, authors, listing_date, upvotes, num_comments, "
            "ai_keywords, content_hash, first_seen, updated_at) "
            "VALUES (:a, :t, :b, '[\"Ada\"]', :d, 0, 0, '[]', :h, :c, :c)"),
            {"a": PAPER.arxiv_id, "t": PAPER.title, "b": PAPER.abstract, "d": PAPER.listing_date,
             "h": PAPER.content_hash, "c": now})
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for sid in (1, 2, 3):
            enqueue_confirmation(s, sid, date(2026, 11, 2))
            record_feedback(s, sid, PAPER.arxiv_id, 1)
        s.execute(text("DELETE FROM subscribers WHERE id = 4"))

    upgrade(engine, "0005")

    assert current_revision(engine) == "0005"
    with sessions() as s:  # the columns 0005 knows (the ORM maps later ones too)
        subs = {r.id: r for r in s.execute(select(SubscriberRow.id, SubscriberRow.interests, SubscriberRow.link_key,
                                                  SubscriberRow.status_changed_at))}
        assert s.scalar(select(func.count()).select_from(DeliveryRow)) == 3
        assert s.scalar(select(func.count()).select_from(FeedbackRow)) == 3
    assert sorted(subs) == [1, 2, 3] and [subs[i].interests for i in (1, 2, 3)] == [["x"]] * 3
    assert len({r.link_key for r in subs.values()}) == 3 and all(r.status_changed_at for r in subs.values())
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # enforcement back on
            assert conn.execute(text("PRAGMA foreign_key_check")).fetchall() == []
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'")).scalar()
            assert "AUTOINCREMENT" in ddl
            indexes = {r[1] for r in conn.execute(text("PRAGMA index_list('subscribers')"))}
            assert "ix_subscribers_status" in indexes
    upgrade(engine)  # the store's doors write every column of the newest schema
    with sessions.begin() as s:
        new = stored_id(add_subscriber(s, "new@example.org"))
        remove_subscriber(s, "new@example.org")
    with sessions.begin() as s:
        assert stored_id(add_subscriber(s, "newer@example.org")) > new > 3
