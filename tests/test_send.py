"""Sending through the outbox to a real SMTP server (aiosmtpd on 127.0.0.1), with faults and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest import pipeline
from digest.config import Settings
from digest.send import SendReport, TooManySendErrors, send_day
from digest.store import session_factory
from digest.store import outbox
from digest.store.tables import DeliveryRow, SubscriberRow

from .builders import ROOT, SECRET, readers_with_picks, smtp_settings
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.all_backends
DAY = date(2025, 6, 5)


def send_settings(settings: Settings, server: SmtpTestServer, **changes: Any) -> Settings:
    return smtp_settings(server.port, settings, **{
        "secret_key": SecretStr(SECRET), "public_url": "https://digest.example.org",
        "send_retry_initial": 0.05, "send_retry_max": 0.2, "send_deadline_seconds": 20, **changes,
    })


def plan(settings: Settings, n: int, hostile: bool = False) -> tuple[list[str], list[int]]:
    """Store the real 2025-06-05 listing, add ``n`` subscribers and plan 3 papers each (no model needed)."""
    readers = readers_with_picks(settings, n, hostile=hostile)
    with session_factory(readers.engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    return readers.emails, readers.ids


def statuses(settings: Settings) -> dict[str, str]:
    engine = pipeline.open_store(settings, migrate=False)
    with session_factory(engine)() as s:
        rows = s.execute(select(SubscriberRow.email, DeliveryRow.status).join(
            DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id))
        return {email: status for email, status in rows}


def test_received_message_parses_back(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails, _ = plan(s, 1, hostile=True)
    report = send_day(pipeline.open_store(s), s, DAY)
    assert (report.sent, report.failed) == (1, 0)
    [received] = smtp.messages
    msg = received.parse()
    assert received.rcpt == emails[0] and msg["To"].addresses[0].addr_spec == emails[0]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert msg["Subject"].startswith("Daily Papers, 2025-06-05: ")
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = msg["List-Unsubscribe"]
    assert unsub.startswith("<https://digest.example.org/unsubscribe/") and unsub.count("<") == 1
    assert msg["List-Id"] and msg["Date"] and msg["Message-ID"].endswith(">")
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    assert len(html.encode()) < 100_000
    assert "<script" not in html and "<img src=x" not in html and "<b>Mallory" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Mallory" in html
    assert "Attention" in text and "https://digest.example.org/unsubscribe/" in text
    assert statuses(s) == {emails[0]: "sent"}


def test_faults_every_subscriber_gets_exactly_one(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails, _ = plan(s, 10)
    smtp.rcpt.queued[emails[1]] = ["451 4.3.0 greylisted", "451 4.3.0 greylisted"]
    smtp.data.queued[emails[2]] = ["452 4.3.1 insufficient storage"]
    smtp.data.drop_for.add(emails[3])
    smtp.rcpt.queued[emails[4]] = ["550 5.1.1 no such user"] * 5
    smtp.data_delay = 0.02  # a slow server
    report = send_day(pipeline.open_store(s), s, DAY)
    got = smtp.by_rcpt()
    assert {e: len(got.get(e, [])) for e in emails} == {e: (0 if e == emails[4] else 1) for e in emails}
    assert (report.sent, report.failed, report.suppressed, report.pending) == (9, 1, 1, 0)
    assert report.retried == 4
    st = statuses(s)
    assert st[emails[4]] == "failed" and all(st[e] == "sent" for e in emails if e != emails[4])
    engine = pipeline.open_store(s, migrate=False)
    with session_factory(engine)() as sess:
        bounced = sess.scalar(select(SubscriberRow.status).where(SubscriberRow.email == emails[4]))
    assert bounced == "bounced"
    again = send_day(engine, s, DAY)
    assert (again.sent, again.failed) == (0, 0) and len(smtp.messages) == 9


def test_broken_server_stops_the_run(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp, send_max_consecutive_errors=3, send_batch_size=2)
    emails, _ = plan(s, 8)
    for e in emails:
        smtp.rcpt.queued[e] = ["421 4.7.0 server broken"] * 100
    with pytest.raises(TooManySendErrors, match="3 send errors in a row") as exc:
        send_day(pipeline.open_store(s), s, DAY)
    assert exc.value.report.sent == 0 and smtp.messages == []
    assert set(statuses(s).values()) == {"planned"}, "nothing is lost: every row is still planned"


def test_an_unreachable_server_stops_a_one_subscriber_list(settings: Settings, smtp: SmtpTestServer) -> None:
    """Nothing listens: each attempt counts, even for one recipient (the brake otherwise counts recipients, so
    a list of one would retry until its deadline and the run would end 'done')."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: connections are refused
    s = send_settings(settings, smtp, send_max_consecutive_errors=3).model_copy(update={"smtp_port": port})
    plan(s, 1)
    with pytest.raises(TooManySendErrors, match="3 send errors in a row") as exc:
        send_day(pipeline.open_store(s), s, DAY)
    assert exc.value.report.retried == 3 and exc.value.report.pending == 1
    assert set(statuses(s).values()) == {"planned"}


def test_two_senders_at_once_send_each_mail_once(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp, send_batch_size=3)
    emails, _ = plan(s, 30)
    smtp.data_delay = 0.01
    reports: list[SendReport] = []
    threads = [threading.Thread(target=lambda: reports.append(send_day(pipeline.open_store(s), s, DAY)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m.rcpt for m in smtp.messages) == sorted(emails)
    assert sum(r.sent for r in reports) == 30


def test_parallel_connections(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp, smtp_connections=3, send_batch_size=4)
    emails, _ = plan(s, 24)
    report = send_day(pipeline.open_store(s), s, DAY)
    assert report.sent == 24 and sorted(m.rcpt for m in smtp.messages) == sorted(emails)
    assert smtp.connections == 3



def test_a_limited_send_takes_a_bounded_slice(settings: Settings, smtp: SmtpTestServer) -> None:
    """``limit``: at most that many rows claimed (over all connections, batches cut to fit); the rest stays
    planned, and further slices send it, each mail once."""
    s = send_settings(settings, smtp, smtp_connections=2, send_batch_size=4)
    emails, _ = plan(s, 23)
    engine = pipeline.open_store(s)
    first = send_day(engine, s, DAY, limit=10)
    assert (first.sent, first.pending) == (10, 13) and len(smtp.messages) == 10
    slices = [send_day(engine, s, DAY, limit=10).sent for _ in range(3)]
    assert slices == [10, 3, 0]
    assert sorted(m.rcpt for m in smtp.messages) == sorted(emails)
    with pytest.raises(ValueError, match="at least 1"):
        send_day(engine, s, DAY, limit=0)

@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 7, 16])
def test_kill_9_mid_batch_then_rerun(settings: Settings, smtp: SmtpTestServer, kill_after: int) -> None:
    s = send_settings(settings, smtp, send_batch_size=5)
    emails, _ = plan(s, 20)
    smtp.data_delay = 0.05
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": s.database_url, "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port), "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_SECRET_KEY": SECRET, "DIGEST_SEND_BATCH_SIZE": "5",
        "DIGEST_SEND_LEASE_SECONDS": "1",
    }
    cmd = [sys.executable, "-m", "digest.cli", "send", "--date", DAY.isoformat(), "--json"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(smtp.messages) < kill_after and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = statuses(s)
    in_flight = sum(1 for v in before.values() if v == "sending")
    # sent is recorded in groups: at most send_mark_every accepted messages are not yet recorded
    assert sum(1 for v in before.values() if v == "sent") >= kill_after - s.send_mark_every
    time.sleep(1.1)  # the dead sender's lease runs out
    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["resent"] == in_flight
    assert set(statuses(s).values()) == {"sent"}
    counts = {e: len(smtp.by_rcpt().get(e, [])) for e in emails}
    assert all(c >= 1 for c in counts.values()), counts
    duplicates = sum(c - 1 for c in counts.values())
    # in flight: accepted but not yet recorded (fewer than send_mark_every), and the one being sent
    assert duplicates <= min(in_flight, s.send_mark_every), f"at most the in-flight messages are duplicated: {counts}"
    ids = {e: {m.message_id for m in smtp.by_rcpt()[e]} for e in emails}
    assert all(len(v) == 1 for v in ids.values()), "a re-sent digest keeps its Message-ID"
