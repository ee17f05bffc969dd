"""The Prefect flows on a real local Prefect (test harness), a local HF stand-in over HTTP, a real SMTP
server, on SQLite and PostgreSQL. Slow: the first flow run starts Prefect's temporary server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from digest import pipeline
from digest.config import Settings
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import Base, DeliveryItemRow, DeliveryRow, PaperRow, SentenceEmbeddingRow

from .builders import API_2025_06_05, SECRET, Answer, HfScript, Query, bare_settings, items_for
from .smtp_server import SmtpTestServer

pytestmark = [pytest.mark.slow, pytest.mark.all_backends]
SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())


@dataclass(frozen=True)
class FlowEnv:
    """What a flow run in these tests talks to: its settings (from the environment, as a deployment reads
    them), the store, the Hugging Face stand-in and the SMTP server."""

    settings: Settings
    engine: Engine
    hf: HfScript
    smtp: SmtpTestServer


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Settings, hf_server: HfScript, smtp: SmtpTestServer) -> FlowEnv:
    values = {
        "DIGEST_DATABASE_URL": settings.database_url, "DIGEST_HF_BASE_URL": hf_server.base,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_SMTP_SECURITY": "none", "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_BACKFILL_MIN_INTERVAL": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    engine = pipeline.open_store(s)
    with session_factory(engine).begin() as sess:
        add_subscriber(sess, "ada@example.org", interests=["LLM reasoning with reinforcement learning"])
        add_subscriber(sess, "alan@example.org", max_papers=40)  # no interests: trending, everything
    return FlowEnv(s, engine, hf_server, smtp)


def count(engine: Engine, model: type[Base]) -> int:
    with session_factory(engine)() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_daily_digest_sends_once_per_subscriber(prefect_harness: None, env: FlowEnv) -> None:
    from flows.daily import daily_digest

    day = date(2025, 6, 5)
    env.hf.answers["/api/daily_papers"] = [(200, {}, items_for(day, SOURCE))]
    summary = daily_digest(day=day)
    assert (summary.papers_fetched, summary.papers_new, summary.deliveries_planned, summary.sent) == (30, 30, 2, 2)
    # The embed step split every paper of the day (planning alone splits only what an interest picked), and
    # the summary counts those sentences with the papers.
    with session_factory(env.engine)() as sess:
        cached = [len(ss) for ss in sess.scalars(select(SentenceEmbeddingRow.sentences))]
    assert len(cached) == 30 and summary.papers_embedded == 30 and summary.sentences_embedded == sum(cached) > 0
    assert "| sentences embedded |" in summary.markdown()
    assert sorted(m.rcpt for m in env.smtp.messages) == ["ada@example.org", "alan@example.org"]
    again = daily_digest(day=day)
    assert (again.papers_new, again.deliveries_planned, again.sent) == (0, 0, 0)
    assert (again.papers_embedded, again.sentences_embedded, again.interests_embedded) == (0, 0, 0)
    assert len(env.smtp.messages) == 2


def test_broken_listing_fails_before_planning(prefect_harness: None, env: FlowEnv) -> None:
    from flows.daily import daily_digest

    broken = json.loads(items_for(date(2025, 6, 5), SOURCE))
    del broken[4]["paper"]["summary"]
    env.hf.answers["/api/daily_papers"] = [(200, {}, json.dumps(broken).encode())]
    env.hf.answers["/papers/date/2025-06-05"] = [(200, {}, b"<html><body>maintenance</body></html>")]
    with pytest.raises(Exception, match="summary"):
        daily_digest(day=date(2025, 6, 5))
    assert count(env.engine, DeliveryRow) == 0 and count(env.engine, PaperRow) == 0 and env.smtp.messages == []


def test_empty_day_then_catch_up(prefect_harness: None, env: FlowEnv) -> None:
    from flows.daily import daily_digest

    d1, d2, d3 = date(2025, 6, 3), date(2025, 6, 4), date(2025, 6, 5)
    first, late, last = SOURCE[:10], SOURCE[10:18], SOURCE[18:]
    env.hf.answers["/api/daily_papers"] = [(200, {}, items_for(d1, first))]
    assert daily_digest(day=d1).sent == 2
    # d2's run sees an empty day: it completes and sends nothing.
    env.hf.answers["/api/daily_papers"] = [(200, {}, b"[]")]
    empty = daily_digest(day=d2)
    assert empty.listing.startswith("no listing") and empty.sent == 0 and len(env.smtp.messages) == 2
    # By d3, HF has listed papers on d2 after all: d3's run re-fetches d2 and mails those too.
    answers = {d2.isoformat(): items_for(d2, late), d3.isoformat(): items_for(d3, last)}

    def by_date(query: Query) -> Answer:
        return 200, {}, answers.get(query.get("date", [""])[0], b"[]")

    env.hf.routes["/api/daily_papers"] = by_date
    summary = daily_digest(day=d3)
    assert summary.papers_late == len(late) and summary.sent == 2
    with session_factory(env.engine)() as sess:
        mailed = set(sess.scalars(
            select(DeliveryItemRow.arxiv_id).join(DeliveryRow).where(DeliveryRow.digest_date == d3)))
    late_ids = {it["paper"]["id"] for it in late}
    last_ids = {it["paper"]["id"] for it in last}
    assert late_ids | last_ids <= mailed, "the trending subscriber gets the late d2 papers and d3's"
    assert not ({it["paper"]["id"] for it in first} & mailed), "nothing mailed on d1 comes again"


def test_backfill_stores_previews_and_resumes(prefect_harness: None, env: FlowEnv, tmp_path: Path) -> None:
    from flows.backfill import backfill

    start = date(2025, 6, 1)
    days = [start + timedelta(days=i) for i in range(3)]
    chunks = {days[0].isoformat(): SOURCE[:10], days[1].isoformat(): [], days[2].isoformat(): SOURCE[10:20]}

    def by_date(query: Query) -> Answer:
        requested = query["date"][0]
        return 200, {}, items_for(date.fromisoformat(requested), chunks[requested])

    env.hf.routes["/api/daily_papers"] = by_date
    results = backfill(start=days[0], end=days[1], preview_dir=str(tmp_path / "previews"))
    assert [r.status for r in results] == ["stored", "empty"]
    assert count(env.engine, PaperRow) == 10 and count(env.engine, DeliveryRow) == 0 and env.smtp.messages == []
    assert sorted(p.name for p in (tmp_path / "previews" / days[0].isoformat()).iterdir()) == [
        "ada@example.org.html", "alan@example.org.html"]
    requests_before = len(env.hf.log)
    resumed = backfill(start=days[0], end=days[2])
    assert [r.status for r in resumed] == ["skipped (already stored)", "empty", "stored"]
    fetched = [e[2]["date"][0] for e in env.hf.log[requests_before:]]
    assert days[0].isoformat() not in fetched, "a stored date is not fetched again"
    assert count(env.engine, PaperRow) == 20 and env.smtp.messages == []
    # --send: each non-empty date planned and sent by the daily flow's send step, resumed (nothing fetched
    # again), requests spaced by backfill_min_interval when there are any
    requests_before = len(env.hf.log)
    sent = backfill(start=days[0], end=days[2], send=True)
    assert len(env.hf.log) == requests_before + 1, "only the empty date is asked again"
    assert [(r.status, r.planned, r.sent) for r in sent] == [
        ("skipped (already stored)", 2, 2), ("empty", 0, 0), ("skipped (already stored)", 2, 2)]
    received = sorted(m.rcpt for m in env.smtp.messages)
    assert received == ["ada@example.org"] * 2 + ["alan@example.org"] * 2
    again = backfill(start=days[0], end=days[2], send=True)
    assert [r.sent for r in again] == [0, 0, 0] and len(env.smtp.messages) == 4, "each digest once"


def test_backfill_spaces_its_requests(prefect_harness: None, env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.backfill import backfill

    monkeypatch.setenv("DIGEST_BACKFILL_MIN_INTERVAL", "0.4")
    env.hf.routes["/api/daily_papers"] = lambda query: (200, {}, b"[]")
    results = backfill(start=date(2025, 6, 7), end=date(2025, 6, 9))
    assert [r.status for r in results] == ["empty"] * 3
    times = [t for t, path, _, _ in env.hf.log if path == "/api/daily_papers"]
    # spaced at the client: the server sees each arrival after the request's own set-up, so allow for jitter
    assert len(times) == 3 and min(b - a for a, b in zip(times, times[1:])) >= 0.3


def test_deployments_have_the_schedule(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.client.schemas.schedules import CronSchedule

    from flows.deployments import build_deployments

    s = bare_settings(schedule_cron="30 6 * * 1-5", timezone="Europe/Berlin")
    ids = build_deployments(s, apply=True)
    assert len(ids) == 2

    async def read() -> list[DeploymentResponse]:
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    daily, back = asyncio.run(read())
    assert daily.name == "daily-digest" and back.name == "backfill"
    [sched] = daily.schedules
    assert isinstance(sched.schedule, CronSchedule)
    assert sched.schedule.cron == "30 6 * * 1-5" and sched.schedule.timezone == "Europe/Berlin"
    assert daily.global_concurrency_limit is not None and daily.global_concurrency_limit.limit == 1
    assert daily.concurrency_options is not None and daily.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert back.schedules == []
