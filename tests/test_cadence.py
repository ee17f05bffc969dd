"""Cadences and digest windows, below the flow: which subscribers are due on a day (a SQL filter), which
listing dates and papers a digest considers (papers stored late for a day already mailed come too, what a
subscriber was offered or already weighed never does), the weekday's rules, and migration 0008. On SQLite
and PostgreSQL; no model (the flows in test_flow_days.py mail it for real)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text, update

from digest import cadence, pipeline
from digest.config import Settings
from digest.models import DEFAULT_WEEKDAY, Paper, Pick, SubscriberStatus, cadence_text, parse_weekday
from digest.store import create_db_engine, session_factory, upgrade
from digest.store import outbox
from digest.store.papers import upsert_papers
from digest.store.subscribers import (
    add_subscriber,
    count_due,
    edit_subscriber,
    find_subscriber,
    list_due,
)
from digest.store.tables import DeliveryRow

from .builders import paper

pytestmark = pytest.mark.all_backends
WED, THU = date(2025, 6, 11), date(2025, 6, 12)  # THU.weekday() == 3


# -- the rules (no database) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frequency, last, expected",
    [
        ("daily", None, THU),  # brand new: the day itself, no back-catalogue
        ("daily", WED, THU),
        ("daily", THU - timedelta(days=3), THU - timedelta(days=2)),  # a weekend: back to the last digest
        ("daily", THU - timedelta(days=30), THU - timedelta(days=6)),  # at most rank_window_days (7)
        ("daily", THU, THU),
        ("weekly", None, THU - timedelta(days=6)),  # brand new: the week ending on the day
        ("weekly", THU - timedelta(days=7), THU - timedelta(days=6)),  # since the last weekly digest
        ("weekly", THU - timedelta(days=11), THU - timedelta(days=10)),  # a weekday changed: still everything
        ("weekly", THU - timedelta(days=30), THU - timedelta(days=12)),  # a week + the 6-day catch-up
    ],
)
def test_window_start_follows_the_last_digest_and_the_cadence(frequency: str, last: date | None,
                                                              expected: date) -> None:
    assert cadence.window_start(THU, frequency, last, 7) == expected


def test_due_days_weekdays_and_defaults() -> None:
    assert all(cadence.is_due("daily", None, THU + timedelta(days=k)) for k in range(7))
    assert [cadence.is_due("weekly", 3, THU + timedelta(days=k)) for k in range(7)] == [True] + [False] * 6
    assert not cadence.is_due("weekly", None, THU)
    assert cadence.next_due("weekly", 3, WED) == THU and cadence.next_due("weekly", 2, THU) == THU + timedelta(6)
    assert [parse_weekday(x) for x in ("mon", "Thu", " sunday ", "FRIDAY", 6)] == [0, 3, 6, 4, 6]
    for bad in ("thursdays", "", "7", 7, -1, True):
        with pytest.raises(ValueError, match="weekday must be one of mon, tue"):
            parse_weekday(bad)  # type: ignore[arg-type]
    assert cadence_text("weekly", 3) == "weekly on Thursday" and cadence_text("daily", None) == "daily"
    assert DEFAULT_WEEKDAY == 4
    # Papers per digest follow the cadence while the subscriber kept the default, never their own choice.
    assert cadence.max_papers_after("daily", "weekly", 10, None, 25) == 25
    assert cadence.max_papers_after("weekly", "daily", 25, 25, 25) == 10
    assert cadence.max_papers_after("daily", "weekly", 7, None, 25) == 7
    assert cadence.max_papers_after("daily", "weekly", 10, 12, 25) == 12
    assert cadence.max_papers_after("daily", "daily", 10, None, 25) == 10


# -- who is due (SQL) -------------------------------------------------------------------------------------


def test_due_subscribers_are_the_daily_ones_and_the_weekly_ones_of_that_weekday(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s:
        add_subscriber(s, "daily@example.org")
        add_subscriber(s, "thu@example.org", frequency="weekly", weekday="thu")
        add_subscriber(s, "fri@example.org", frequency="weekly")  # Friday unless told
        add_subscriber(s, "paused@example.org", frequency="weekly", weekday=3, status=SubscriberStatus.unsubscribed)
    with session_factory(engine)() as s:
        assert [x.email for x in list_due(s, THU)] == ["daily@example.org", "thu@example.org"]
        assert [x.email for x in list_due(s, THU + timedelta(days=1))] == ["daily@example.org", "fri@example.org"]
        assert [x.email for x in list_due(s, THU, weekly_only=True)] == ["thu@example.org"]
        assert [count_due(s, THU + timedelta(days=k), weekly_only=True) for k in range(7)] == [1, 1, 0, 0, 0, 0, 0]
        assert find_subscriber(s, email="fri@example.org").weekday == DEFAULT_WEEKDAY  # type: ignore[union-attr]


def test_a_weekday_is_weekly_only_and_goes_when_the_cadence_goes(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s, pytest.raises(ValueError, match="a weekday is for weekly"):
        add_subscriber(s, "ada@example.org", weekday="thu")
    with session_factory(engine).begin() as s:
        add_subscriber(s, "ada@example.org", frequency="weekly", weekday="tue")
    with session_factory(engine).begin() as s, pytest.raises(ValueError, match="weekday must be one of"):
        edit_subscriber(s, "ada@example.org", weekday="someday")
    with session_factory(engine).begin() as s:
        assert edit_subscriber(s, "ada@example.org", max_papers=30).weekday == 1  # kept when not told
        assert edit_subscriber(s, "ada@example.org", weekday="sat").weekday == 5
        sub = edit_subscriber(s, "ada@example.org", frequency="daily")
        assert (sub.frequency, sub.weekday) == ("daily", None)
        with pytest.raises(ValueError, match="a weekday is for weekly"):
            edit_subscriber(s, "ada@example.org", weekday="sat")


def test_migration_0008_gives_weekly_subscribers_friday(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0007")
    with engine.begin() as conn:
        for email, frequency in (("weekly@example.org", "weekly"), ("daily@example.org", "daily")):
            conn.execute(text(
                "INSERT INTO subscribers (email, status, interests, negative_interests, include_keywords, "
                "exclude_keywords, seed_papers, max_papers, frequency, timezone, created_at, link_key, "
                f"status_changed_at) VALUES ('{email}', 'active', '[]', '[]', '[]', '[]', '[]', 10, '{frequency}', "
                "'UTC', '2026-08-18 00:00:00', 'k', '2026-08-18 00:00:00')"))
    upgrade(engine)
    with session_factory(engine)() as s:
        assert find_subscriber(s, email="weekly@example.org").weekday == 4  # type: ignore[union-attr]
        assert find_subscriber(s, email="daily@example.org").weekday is None  # type: ignore[union-attr]
    engine.dispose()


# -- what a digest considers ------------------------------------------------------------------------------


def considered(windows: pipeline.Windows, sid: int, stored: dict[str, date], day: date) -> set[str]:
    """The papers the ranking may pick for ``sid``: listed from its window start to ``day``, not excluded."""
    return {a for a, d in stored.items() if windows.start[sid] <= d <= day and a not in windows.exclude[sid]}


def store(settings: Settings, papers: list[Paper]) -> None:
    with session_factory(pipeline.open_store(settings)).begin() as s:
        upsert_papers(s, papers)


def test_a_digest_considers_what_is_new_since_the_last_one_late_papers_included(settings: Settings) -> None:
    """Wednesday is mailed (ann gets 1 of Wednesday's 4 papers); then 2 papers are added to Wednesday's
    list, 1 to Monday's and 1 to a day outside every window. Thursday considers, for ann, Thursday's paper
    and the 3 late ones; not the 3 Wednesday papers weighed and left out, nor the one she got (its digest
    failed: offered is offered). Someone new starts at Thursday, a new weekly subscriber at the week."""
    def listed(i: int, day: date) -> Paper:
        return paper(i, arxiv_id=f"2506.{i:05d}", listing_date=day)

    mon = WED - timedelta(days=2)
    early = [listed(i, WED) for i in range(1, 5)]
    store(settings, early)
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s:
        ann = add_subscriber(s, "ann@example.org").id
        bob = add_subscriber(s, "bob@example.org").id  # skipped on Wednesday: nothing for him
        assert ann is not None and bob is not None
        outbox.plan_deliveries(s, WED, {ann: [Pick(early[0].arxiv_id, 1, 0.9, "trending")], bob: []})
        s.execute(update(DeliveryRow).where(DeliveryRow.subscriber_id == ann).values(status="failed"))
    late = [listed(5, WED), listed(6, WED), listed(7, mon), listed(8, WED - timedelta(days=20))]
    thursday = [listed(9, THU)]
    store(settings, late + thursday)
    with session_factory(engine).begin() as s:
        cy = add_subscriber(s, "cy@example.org").id
        wes = add_subscriber(s, "wes@example.org", frequency="weekly", weekday="thu").id
    stored = {p.arxiv_id: p.listing_date for p in early + late + thursday}
    with session_factory(engine)() as s:
        subs = [find_subscriber(s, i) for i in (ann, bob, cy, wes)]
        windows = pipeline.digest_windows(s, settings, THU, subs)  # type: ignore[arg-type]
    new = {"2506.00005", "2506.00006", "2506.00007", "2506.00009"}
    assert considered(windows, ann, stored, THU) == new
    assert considered(windows, bob, stored, THU) == new, "a skipped digest was weighed all the same"
    assert windows.exclude[ann] is windows.exclude[bob], "one shared set for a run's subscribers, no copies"
    assert considered(windows, cy, stored, THU) == {"2506.00009"}, "brand new: from the digest day"  # type: ignore[index]
    week = {a for a, d in stored.items() if d >= THU - timedelta(days=6)}
    assert considered(windows, wes, stored, THU) == week  # type: ignore[index]
