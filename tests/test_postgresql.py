"""What only PostgreSQL does: senders claim outbox rows with ``FOR UPDATE SKIP LOCKED``, so two sender
processes on one date share the outbox without waiting on each other's rows, and deliver every mail once.
On the session's real PostgreSQL server (tests/pg_server.py), or on DIGEST_TEST_DATABASE_URL."""

from __future__ import annotations

import re

import json
import os
import sys
import time
from collections import Counter
from datetime import date
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event, select, text, update

from digest import pipeline
from digest.config import Settings
from digest.store import outbox, session_factory
from digest.send import send_day
from digest.sources.huggingface import load_listing_file
from digest.store.subscribers import insert_subscribers
from digest.store.tables import DeliveryRow, SubscriberRow

from .builders import HF_FIXTURES, SECRET, readers_with_picks, run_at_once, smtp_settings
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)],
                                     indirect=True)
DAY = date(2025, 6, 5)


def planned(settings: Settings, n: int) -> list[str]:
    """``n`` subscribers with a planned digest of ``DAY`` (three real papers each); their addresses."""
    readers = readers_with_picks(settings, n)
    with session_factory(readers.engine).begin() as s:
        report = outbox.plan_deliveries(s, DAY, readers.picks)
    assert report.planned == n
    readers.engine.dispose()
    return readers.emails


def test_claims_lock_with_skip_locked(settings: Settings) -> None:
    """The claim's SELECT carries FOR UPDATE [OF deliveries] SKIP LOCKED on PostgreSQL (the claim joins the
    subscriber, whose row it must not lock)."""
    planned(settings, 3)
    engine = pipeline.open_store(settings, migrate=False)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))
    with session_factory(engine).begin() as s:
        assert len(outbox.claim_batch(s, DAY, 10)) == 3
    engine.dispose()
    assert any(re.search(r"FOR UPDATE (OF deliveries )?SKIP LOCKED", sql) for sql in statements), statements


def test_a_claim_skips_rows_another_sender_holds(settings: Settings) -> None:
    """While one sender's claim is still open (its rows locked, not yet committed), a second sender gets
    the other rows at once instead of waiting for those locks, and never the held ones."""
    planned(settings, 12)
    engine = pipeline.open_store(settings, migrate=False)
    sessions = session_factory(engine)
    with sessions.begin() as first:
        held = {c.delivery_id for c in outbox.claim_batch(first, DAY, 5)}
        assert len(held) == 5
        with sessions.begin() as second:
            second.execute(text("SET LOCAL lock_timeout = '3s'"))  # waiting on a lock would fail the test
            started = time.monotonic()
            other = {c.delivery_id for c in outbox.claim_batch(second, DAY, 100)}
            waited = time.monotonic() - started
    engine.dispose()
    assert len(other) == 7 and not held & other
    assert waited < 3, f"the second claim waited {waited:.1f} s for the first one's locks"


def test_history_queries_for_70000_subscribers_stay_under_the_parameter_limit(settings: Settings) -> None:
    """PostgreSQL takes at most 65,535 parameters in one statement; planning asks about every subscriber
    (the history queries go in chunks of ``outbox.IN_CHUNK`` ids)."""
    engine = pipeline.open_store(settings)
    ids = list(range(1, 70_001))
    with session_factory(engine)() as s:
        assert outbox.offered_paper_ids(s, ids, other_than=DAY) == {i: set() for i in ids}
        assert outbox.last_digests(s, ids, before=DAY) == {}
    engine.dispose()


@pytest.mark.slow
def test_plan_and_send_70000_subscribers(settings: Settings, smtp: SmtpTestServer) -> None:
    """Planning and sending over more subscribers than PostgreSQL takes parameters in one statement: every
    query over subscribers or deliveries is chunked. 70,000 subscribers are planned (a trending pick each:
    the model encodes the listing's two papers only); then all but 30 unsubscribe, and the send claims every
    one of the 70,000 rows: 30 mails reach the SMTP server, the rest are skipped at their claim."""
    n, mailed = 70_000, 30
    engine = pipeline.open_store(settings)
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json")
    pipeline.store(engine, listing)
    with session_factory(engine).begin() as s:
        for lo in range(0, n, 10_000):
            insert_subscribers(s, [{"email": f"r{i}@example.org", "max_papers": 1} for i in range(lo, lo + 10_000)])
    day = listing.listing_date
    planned = pipeline.plan(engine, settings, day)
    assert (planned.planned, planned.skipped, planned.existing) == (n, 0, 0)
    assert pipeline.plan(engine, settings, day).existing == n
    keep = [f"r{i}@example.org" for i in range(0, n, n // mailed)][:mailed]
    with session_factory(engine).begin() as s:
        s.execute(update(SubscriberRow).where(SubscriberRow.email.not_in(keep)).values(status="unsubscribed"))
    s2 = smtp_settings(smtp.port, settings, send_batch_size=1000, secret_key=SecretStr(SECRET))
    report = send_day(engine, s2, day)
    assert (report.sent, report.skipped, report.failed, report.pending) == (mailed, n - mailed, 0, 0)
    assert sorted(m.rcpt for m in smtp.messages) == sorted(keep)
    with session_factory(engine)() as s:
        assert outbox.status_counts(s, day) == {"sent": mailed, "skipped": n - mailed}
    engine.dispose()


def sender_env(settings: Settings, smtp: SmtpTestServer, **extra: str) -> dict[str, str]:
    """The environment of a ``digest send`` process on ``settings``' database and ``smtp``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": settings.database_url, "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port), "DIGEST_SMTP_SECURITY": "none", "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_PUBLIC_URL": "https://digest.example.org", **extra,
    }


@pytest.mark.slow
def test_two_sender_processes_deliver_every_mail_exactly_once(settings: Settings, smtp: SmtpTestServer) -> None:
    """Two ``digest send`` processes on one date and one database, each with two SMTP connections and small
    batches so their claims interleave: 2,000 digests, each received once (0 lost, 0 duplicated), each with
    the Message-ID its row records, and both processes sent a share."""
    n = 2000
    s = smtp_settings(smtp.port, settings)
    emails = planned(s, n)
    env = sender_env(s, smtp, DIGEST_SEND_BATCH_SIZE="10", DIGEST_SMTP_CONNECTIONS="2")
    cmd = [sys.executable, "-m", "digest.cli", "send", "--date", DAY.isoformat(), "--json"]
    started = time.monotonic()
    runs = run_at_once(cmd, env)
    elapsed = time.monotonic() - started
    for r in runs:
        assert r.returncode == 0, r.stderr
    reports: list[dict[str, Any]] = [json.loads(r.stdout) for r in runs]
    print(f"\n2 sender processes: {n} digests in {elapsed:.1f} s, sent {[r['sent'] for r in reports]}")

    received = Counter(m.rcpt for m in smtp.messages)
    lost = [e for e in emails if received[e] == 0]
    duplicated = {e: c for e, c in received.items() if c > 1}
    assert (len(lost), len(duplicated)) == (0, 0), f"lost {lost[:5]}..., duplicated {list(duplicated.items())[:5]}..."
    assert set(received) == set(emails) and len(smtp.messages) == n
    assert sum(r["sent"] for r in reports) == n and all(r["sent"] > 0 for r in reports), reports
    assert all((r["failed"], r["retried"], r["pending"]) == (0, 0, 0) for r in reports), reports

    engine = pipeline.open_store(s, migrate=False)
    with session_factory(engine)() as session:
        rows = session.execute(select(SubscriberRow.email, DeliveryRow.status, DeliveryRow.message_id).join(
            DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id)).all()
    engine.dispose()
    assert {status for _, status, _ in rows} == {"sent"} and len(rows) == n
    recorded = {email: message_id for email, _, message_id in rows}
    assert {m.rcpt: m.message_id for m in smtp.messages} == recorded
    assert len(set(recorded.values())) == n, "every digest has its own Message-ID"
