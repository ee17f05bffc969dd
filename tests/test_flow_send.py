"""The send step of the daily flow on a real local Prefect (test harness), the real SMTP test server and a
real SQLite file: N connections in total, and rows another sender still holds are waited for (bounded)
or the run fails instead of completing."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest
from pydantic import SecretStr

from digest import pipeline
from digest.config import Settings, use_settings
from digest.send import StillLeased
from digest.store import outbox, session_factory
from digest.store.subscribers import add_subscriber

from .builders import API_2025_06_05, SECRET, readers_with_picks, smtp_settings
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow
DAY = date(2025, 6, 5)


def flow_settings(settings: Settings, smtp: SmtpTestServer, **changes: Any) -> Settings:
    return smtp_settings(smtp.port, settings, **{"secret_key": SecretStr(SECRET), **changes})


def hold_rows(s: Settings, n: int) -> tuple[list[str], str]:
    """Plan a digest for ``n`` readers and claim 3 of them, as another sender would; the claim's token."""
    readers = readers_with_picks(s, n)
    with session_factory(readers.engine).begin() as session:
        outbox.plan_deliveries(session, DAY, readers.picks)
    with session_factory(readers.engine).begin() as session:
        batch = outbox.claim_batch(session, DAY, 3)
    assert len(batch) == 3
    return readers.emails, batch.token


def test_the_send_step_waits_for_rows_another_sender_leased(prefect_harness: None, settings: Settings,
                                                             smtp: SmtpTestServer) -> None:
    from flows.daily import daily_digest

    s = flow_settings(settings, smtp, send_lease_seconds=2, send_lease_wait_seconds=30)
    emails, token = hold_rows(s, 8)
    sessions = session_factory(pipeline.open_store(s))
    stop = threading.Event()

    def other_sender() -> None:
        """Alive (renewing its lease) until the flow has sent the 5 rows it could, then dead."""
        while not stop.is_set() and len(smtp.messages) < 5:
            with sessions.begin() as session:
                outbox.renew(session, token)
            time.sleep(0.2)

    holder = threading.Thread(target=other_sender)
    holder.start()
    try:
        with use_settings(s):
            summary = daily_digest(day=DAY, listing_file=str(API_2025_06_05))
    finally:
        stop.set()
        holder.join()
    assert summary.sent == 8 and summary.resent == 3 and summary.pending == 0
    assert sorted(m.rcpt for m in smtp.messages) == sorted(emails)


def test_the_run_fails_when_rows_stay_leased(prefect_harness: None, settings: Settings,
                                             smtp: SmtpTestServer) -> None:
    from flows.daily import daily_digest

    s = flow_settings(settings, smtp, send_lease_seconds=300, send_lease_wait_seconds=1)
    hold_rows(s, 8)  # a sender that died a moment ago: its lease has 300 s to run
    with use_settings(s):
        state = daily_digest(day=DAY, listing_file=str(API_2025_06_05), return_state=True)
    assert state.is_failed()
    with pytest.raises(StillLeased, match=r"^3 deliveries still leased by another sender until \d{4}-"):
        state.result()
    assert len(smtp.messages) == 5, "what could be sent was sent"


def test_n_connections_in_total(prefect_harness: None, settings: Settings, smtp: SmtpTestServer) -> None:
    from flows.daily import daily_digest

    s = flow_settings(settings, smtp, smtp_connections=3, flow_send_batch=10, send_batch_size=2)
    engine = pipeline.open_store(s)
    with session_factory(engine).begin() as session:  # no interests: the trending papers, no model needed
        emails = [add_subscriber(session, f"reader{i}@example.org").email for i in range(90)]
    smtp.data_delay = 0.02
    with use_settings(s):
        summary = daily_digest(day=DAY, listing_file=str(API_2025_06_05))
    assert summary.deliveries_planned == 90 and summary.sent == 90
    assert sorted(m.rcpt for m in smtp.messages) == sorted(emails)
    assert smtp.connections == 3, "DIGEST_SMTP_CONNECTIONS=3 opens 3 connections in total, not 3 per task"
