"""The daily flow with ``DIGEST_TASK_RUNNER=dask``: its send batches run as tasks on a real temporary local
Dask cluster of worker processes (prefect-dask), each a bounded slice of the outbox claimed in the database,
over the real SMTP test server. Slow: one cluster start (two worker processes that import the project)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from typing import Any

import pytest

from digest import pipeline
from digest.config import Settings
from digest.store import session_factory
from digest.store.subscribers import add_subscriber

from .builders import API_2025_06_05, SECRET, HfScript, items_for
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow
SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())
DAY = date(2025, 6, 5)


def test_daily_flow_sends_on_a_local_dask_cluster(prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
                                                  settings: Settings, hf_server: HfScript,
                                                  smtp: SmtpTestServer) -> None:
    """5 subscribers, 2 Dask workers: the send step cuts the outbox in 2 slices (3 + 2 rows), each task
    with one SMTP connection, run by the 2 worker processes; every subscriber gets
    exactly one mail, and the summary names the runner."""
    env = {
        "DIGEST_DATABASE_URL": settings.database_url, "DIGEST_HF_BASE_URL": hf_server.base,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp.port), "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_SECRET_KEY": SECRET, "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_REFETCH_MAX_DAYS": "0",
        "DIGEST_TASK_RUNNER": "dask", "DIGEST_DASK_WORKERS": "2", "DIGEST_SMTP_CONNECTIONS": "2",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    engine = pipeline.open_store(s)
    emails = [f"reader{i}@example.org" for i in range(5)]
    with session_factory(engine).begin() as sess:
        for e in emails:
            add_subscriber(sess, e, max_papers=3)  # no interests: the trending papers
    engine.dispose()
    hf_server.answers["/api/daily_papers"] = [(200, {}, items_for(DAY, SOURCE))]

    from flows.daily import daily_digest

    summary = daily_digest(day=DAY)
    assert summary.task_runner == "dask (2 workers)"
    assert (summary.deliveries_planned, summary.sent, summary.failed, summary.pending) == (5, 5, 0, 0)
    received = Counter(m.rcpt for m in smtp.messages)
    assert received == Counter({e: 1 for e in emails}), received
    assert smtp.connections == 2, "two slices, one connection each (2 connections over 2 workers)"
    assert summary.send_processes == 2, "each slice ran in a worker process of its own"
    assert "| task runner | dask (2 workers) |" in summary.markdown()


def test_backfill_embeds_on_a_local_dask_cluster(prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
                                                 settings: Settings, hf_server: HfScript) -> None:
    """A backfill's embedding runs as tasks on a Dask worker (one, to load the model once), one per date, while
    the flow fetches the next date; every stored paper gets its vector."""
    from sqlalchemy import func, select

    from digest.store.tables import PaperEmbeddingRow, PaperRow, SentenceEmbeddingRow

    days = [date(2025, 6, 19), date(2025, 6, 20)]
    chunks = {days[0].isoformat(): SOURCE[:3], days[1].isoformat(): SOURCE[3:5]}
    hf_server.routes["/api/daily_papers"] = lambda q: (200, {}, items_for(date.fromisoformat(q["date"][0]),
                                                                          chunks[q["date"][0]]))
    for k, v in {"DIGEST_DATABASE_URL": settings.database_url, "DIGEST_HF_BASE_URL": hf_server.base,
                 "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_BACKFILL_MIN_INTERVAL": "0",
                 "DIGEST_TASK_RUNNER": "dask", "DIGEST_DASK_WORKERS": "1"}.items():
        monkeypatch.setenv(k, v)

    from flows.backfill import backfill

    results = backfill(start=days[0], end=days[1])
    assert [(r.status, r.new, r.embedded) for r in results] == [("stored", 3, 3), ("stored", 2, 2)]
    engine = pipeline.open_store(Settings())
    with session_factory(engine)() as sess:
        assert sess.scalar(select(func.count()).select_from(PaperEmbeddingRow)) == 5
        sentences = {d: sum(len(ss) for ss in sess.scalars(
            select(SentenceEmbeddingRow.sentences).join(PaperRow, PaperRow.arxiv_id == SentenceEmbeddingRow.arxiv_id)
            .where(PaperRow.listing_date == d))) for d in days}
    assert [r.sentences for r in results] == [sentences[d] for d in days] and all(sentences.values())
    engine.dispose()
