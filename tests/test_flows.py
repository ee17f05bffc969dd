"""The Prefect flows on a real local Prefect (test harness), a local HF stand-in over HTTP, a real SMTP
server and a real SQLite file. Slow: the first flow run starts Prefect's temporary server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest import pipeline
from digest.config import Settings
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryItemRow, DeliveryRow, PaperRow

from .conftest import HF_FIXTURES
from .smtp_server import Recorder, RecordingController, start_server
from .test_hf_fetch import hf_server  # noqa: F401 - the local HTTP fixture

pytestmark = pytest.mark.slow
SOURCE = json.loads((HF_FIXTURES / "api_daily_papers_2025-06-05.collector.json").read_text())


def items_for(day: date, items: list[dict]) -> bytes:  # type: ignore[type-arg]
    """Real listing items re-dated to ``day`` (listing date = submittedOnDailyAt)."""
    out = json.loads(json.dumps(items))
    for it in out:
        it["paper"]["submittedOnDailyAt"] = f"{day.isoformat()}T00:00:00.000Z"
    return json.dumps(out).encode()


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingController, Recorder]]:
    controller, recorder = start_server()
    yield controller, recorder
    controller.stop()


@pytest.fixture
def env(monkeypatch, settings, hf_server, smtp):  # type: ignore[no-untyped-def]  # noqa: F811
    base, script = hf_server
    controller, recorder = smtp
    values = {
        "DIGEST_DATABASE_URL": settings.database_url, "DIGEST_HF_BASE_URL": base,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(controller.port),
        "DIGEST_SMTP_SECURITY": "none", "DIGEST_SECRET_KEY": "flow-test-secret",
        "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_BACKFILL_MIN_INTERVAL": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    engine = pipeline.open_store(s)
    with session_factory(engine).begin() as sess:
        add_subscriber(sess, "ada@example.org", interests=["LLM reasoning with reinforcement learning"])
        add_subscriber(sess, "alan@example.org", max_papers=40)  # no interests: trending, everything
    return s, engine, script, recorder


def count(engine, model) -> int:  # type: ignore[no-untyped-def]
    with session_factory(engine)() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_daily_digest_sends_once_per_subscriber(prefect_harness, env) -> None:  # type: ignore[no-untyped-def]
    from flows.daily import daily_digest

    s, engine, script, recorder = env
    day = date(2025, 6, 5)
    script.answers["/api/daily_papers"] = [(200, {}, items_for(day, SOURCE))]
    summary = daily_digest(day=day)
    assert (summary.papers_fetched, summary.papers_new, summary.deliveries_planned, summary.sent) == (30, 30, 2, 2)
    assert sorted(m.rcpt for m in recorder.messages) == ["ada@example.org", "alan@example.org"]
    again = daily_digest(day=day)
    assert (again.papers_new, again.deliveries_planned, again.sent) == (0, 0, 0)
    assert len(recorder.messages) == 2


def test_broken_listing_fails_before_planning(prefect_harness, env) -> None:  # type: ignore[no-untyped-def]
    from flows.daily import daily_digest

    s, engine, script, recorder = env
    broken = json.loads(items_for(date(2025, 6, 5), SOURCE))
    del broken[4]["paper"]["summary"]
    script.answers["/api/daily_papers"] = [(200, {}, json.dumps(broken).encode())]
    script.answers["/papers/date/2025-06-05"] = [(200, {}, b"<html><body>maintenance</body></html>")]
    with pytest.raises(Exception, match="summary"):
        daily_digest(day=date(2025, 6, 5))
    assert count(engine, DeliveryRow) == 0 and count(engine, PaperRow) == 0 and recorder.messages == []


def test_empty_day_then_catch_up(prefect_harness, env) -> None:  # type: ignore[no-untyped-def]
    from flows.daily import daily_digest

    s, engine, script, recorder = env
    d1, d2, d3 = date(2025, 6, 3), date(2025, 6, 4), date(2025, 6, 5)
    first, late, last = SOURCE[:10], SOURCE[10:18], SOURCE[18:]
    script.answers["/api/daily_papers"] = [(200, {}, items_for(d1, first))]
    assert daily_digest(day=d1).sent == 2
    # d2's run sees an empty day: it completes and sends nothing.
    script.answers["/api/daily_papers"] = [(200, {}, b"[]")]
    empty = daily_digest(day=d2)
    assert empty.listing == "no listing today" and empty.sent == 0 and len(recorder.messages) == 2
    # By d3, HF has listed papers on d2 after all: d3's run re-fetches d2 and mails those too.
    answers = {d2.isoformat(): items_for(d2, late), d3.isoformat(): items_for(d3, last)}
    original = script.answers  # route by the date parameter

    class Router(dict):  # type: ignore[type-arg]
        def get(self, path, default=None):  # type: ignore[no-untyped-def]
            if path != "/api/daily_papers":
                return original.get(path, default)
            requested = script.log[-1][2].get("date", [""])[0]
            return [(200, {}, answers.get(requested, b"[]"))]

    script.answers = Router()
    summary = daily_digest(day=d3)
    assert summary.papers_late == len(late) and summary.sent == 2
    with session_factory(engine)() as sess:
        mailed = set(sess.scalars(
            select(DeliveryItemRow.arxiv_id).join(DeliveryRow).where(DeliveryRow.digest_date == d3)))
    late_ids = {it["paper"]["id"] for it in late}
    last_ids = {it["paper"]["id"] for it in last}
    assert late_ids | last_ids <= mailed, "the trending subscriber gets the late d2 papers and d3's"
    assert not ({it["paper"]["id"] for it in first} & mailed), "nothing mailed on d1 comes again"


def test_backfill_stores_previews_and_resumes(prefect_harness, env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from flows.backfill import backfill

    s, engine, script, recorder = env
    start = date(2025, 6, 1)
    days = [start + timedelta(days=i) for i in range(3)]
    chunks = {days[0].isoformat(): SOURCE[:10], days[1].isoformat(): [], days[2].isoformat(): SOURCE[10:20]}
    original = script.answers

    class Router(dict):  # type: ignore[type-arg]
        def get(self, path, default=None):  # type: ignore[no-untyped-def]
            if path != "/api/daily_papers":
                return original.get(path, default)
            requested = script.log[-1][2]["date"][0]
            return [(200, {}, items_for(date.fromisoformat(requested), chunks[requested]))]

    script.answers = Router()
    results = backfill(start=days[0], end=days[1], preview_dir=str(tmp_path / "previews"))
    assert [r.status for r in results] == ["stored", "empty"]
    assert count(engine, PaperRow) == 10 and count(engine, DeliveryRow) == 0 and recorder.messages == []
    assert sorted(p.name for p in (tmp_path / "previews" / days[0].isoformat()).iterdir()) == [
        "ada@example.org.html", "alan@example.org.html"]
    requests_before = len(script.log)
    resumed = backfill(start=days[0], end=days[2])
    assert [r.status for r in resumed] == ["skipped (already stored)", "empty", "stored"]
    fetched = [e[2]["date"][0] for e in script.log[requests_before:]]
    assert days[0].isoformat() not in fetched, "a stored date is not fetched again"
    assert count(engine, PaperRow) == 20 and recorder.messages == []


def test_deployments_have_the_schedule(prefect_harness, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.deployments import build_deployments

    s = Settings(schedule_cron="30 6 * * 1-5", timezone="Europe/Berlin", _env_file=None)  # type: ignore[call-arg]
    ids = build_deployments(s, apply=True)
    assert len(ids) == 2

    async def read() -> list:  # type: ignore[type-arg]
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    daily, back = asyncio.run(read())
    assert daily.name == "daily-digest" and back.name == "backfill"
    [sched] = daily.schedules
    assert sched.schedule.cron == "30 6 * * 1-5" and sched.schedule.timezone == "Europe/Berlin"
    assert daily.global_concurrency_limit is not None and daily.global_concurrency_limit.limit == 1
    assert daily.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert back.schedules == []
