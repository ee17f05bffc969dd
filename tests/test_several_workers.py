"""Several Prefect workers on one outbox: two `digest run` of one date started at once, in two processes, on
one PostgreSQL database (the session's server, tests/pg_server.py) and one Prefect server, as two workers
of a work pool would run them. Every subscriber gets exactly one mail (the real SMTP test server). And
`digest deploy` registers deploy/prefect.yaml for a work pool with the schedule of the settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from digest import pipeline
from digest.config import Settings
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryRow

from .builders import API_2025_06_05, ROOT, SECRET, HfScript, items_for, run_at_once
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow
SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())
DIGEST = Path(sys.executable).parent / "digest"
DAY = date(2025, 6, 5)


@pytest.fixture(scope="module")
def prefect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prefect server for both `digest run` processes (PREFECT_API_URL), as a work pool has."""
    from prefect.settings import PREFECT_HOME, temporary_settings

    from flows.prefect_api import prefect_api

    with temporary_settings({PREFECT_HOME: tmp_path_factory.mktemp("prefect-home")}):
        with prefect_api(scheduler=False) as api:
            yield api.url


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True)
def test_two_runs_of_one_date_at_once_mail_everyone_once(prefect_url: str, settings: Settings,
                                                         hf_server: HfScript, smtp: SmtpTestServer) -> None:
    """40 subscribers; both runs fetch, store, embed and plan the same day at the same time, then send in
    small batches over a slowed server (6 s of sending) so their claims interleave (here 21 + 19; the split
    is printed, not asserted: it depends on timing): each subscriber gets one mail, the outbox records each
    delivery sent once with the Message-ID that arrived, and both runs end 0."""
    n = 40
    engine = pipeline.open_store(settings)
    emails = [f"reader{i}@example.org" for i in range(n)]
    with session_factory(engine).begin() as sess:
        for i, e in enumerate(emails):
            add_subscriber(sess, e, interests=["LLM reasoning"] if i % 2 else [], max_papers=3)
    engine.dispose()
    hf_server.answers["/api/daily_papers"] = [(200, {}, items_for(DAY, SOURCE))] * 2
    smtp.data_delay = 0.15
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "PREFECT_API_URL": prefect_url, "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_HF_BASE_URL": hf_server.base, "DIGEST_SECRET_KEY": SECRET, "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port), "DIGEST_SMTP_SECURITY": "none", "DIGEST_HTTP_MAX_ATTEMPTS": "1",
        "DIGEST_REFETCH_MAX_DAYS": "0", "DIGEST_SEND_BATCH_SIZE": "3",
    }
    cmd = [str(DIGEST), "run", "--date", DAY.isoformat()]
    runs = run_at_once(cmd, env)
    for r in runs:
        assert r.returncode == 0, r.stdout + r.stderr
    sent = [int(re.search(r"│ sent\s+│\s+(\d+)", r.stdout).group(1)) for r in runs]  # type: ignore[union-attr]
    print(f"\nsent by each run: {sent}")
    assert sum(sent) == n

    received = Counter(m.rcpt for m in smtp.messages)
    assert received == Counter({e: 1 for e in emails}), {e: c for e, c in received.items() if c != 1}
    engine = pipeline.open_store(settings, migrate=False)
    with session_factory(engine)() as sess:
        rows = sess.execute(select(DeliveryRow.status, DeliveryRow.message_id)).all()
    engine.dispose()
    assert len(rows) == n and {status for status, _ in rows} == {"sent"}
    assert {m.message_id for m in smtp.messages} == {mid for _, mid in rows}


def test_digest_deploy_takes_the_schedule_from_the_settings(prefect_url: str, tmp_path: Path) -> None:
    """The settings `digest serve` reads (here a .env file in the working directory) give the schedule of
    deploy/prefect.yaml's daily deployment, registered for its work pool with the repository as the
    workers' working directory."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (tmp_path / ".env").write_text('DIGEST_SCHEDULE_CRON="30 6 * * 1-5"\nDIGEST_TIMEZONE=Europe/Berlin\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PREFECT_API"))} | {
        "PREFECT_API_URL": prefect_url}

    async def pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="digest-pool", type="process"), overwrite=True)

    async def read() -> list[Any]:
        async with get_client() as client:
            return [await client.read_deployment_by_name(f"{f}/{f}") for f in ("daily-digest", "backfill")]

    with temporary_settings({PREFECT_API_URL: prefect_url}):
        asyncio.run(pool())
        done = subprocess.run([str(DIGEST), "deploy", "--prefect-file", str(ROOT / "deploy" / "prefect.yaml")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "daily-digest (30 6 * * 1-5, Europe/Berlin)" in done.stdout
        daily, back = asyncio.run(read())
    [sched] = daily.schedules
    assert isinstance(sched.schedule, CronSchedule)
    assert (sched.schedule.cron, sched.schedule.timezone) == ("30 6 * * 1-5", "Europe/Berlin")
    assert daily.work_pool_name == back.work_pool_name == "digest-pool" and back.schedules == []
    assert daily.entrypoint == "flows.daily:daily_digest" and back.entrypoint == "flows.backfill:backfill"
    assert daily.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    assert daily.global_concurrency_limit is not None and daily.global_concurrency_limit.limit == 1
