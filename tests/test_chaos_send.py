"""The sender under hostile servers, stalls and crashes (issue 11), against the real aiosmtpd test server,
with real `digest send` processes for kill -9 and SIGSTOP and a short lease instead of 300 s.

Every scenario prints one line (run with -s to see them):
``CHAOS <scenario>: tries T, lost L, duplicates D, stuck S`` where tries counts MAIL commands the server
saw, lost counts good subscribers neither mailed nor left to retry (failed or suppressed for a fault that
was not theirs), duplicates counts mails beyond the first per subscriber, stuck counts rows left
``sending``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest import pipeline
from digest.config import Settings
from digest.mail import Refusal
from digest.models import Listing, Pick
from digest.send import ServerRefused, TooManySendErrors, send_day
from digest.sources.huggingface import load_listing_file
from digest.store import outbox, session_factory
from digest.store.subscribers import add_subscriber, unsubscribe_subscriber
from digest.store.tables import DeliveryRow, SubscriberRow, utcnow

from .builders import API_2025_06_05, ROOT, SECRET, readers_with_picks, smtp_settings
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow
DAY = date(2025, 6, 5)
LEASE = 3  # seconds, instead of the default 300


def send_settings(settings: Settings, server: SmtpTestServer, **changes: Any) -> Settings:
    return smtp_settings(server.port, settings, **{
        "secret_key": SecretStr(SECRET), "public_url": "https://digest.example.org",
        "send_retry_initial": 0.05, "send_retry_max": 0.2, "send_deadline_seconds": 30, **changes,
    })


def plan(settings: Settings, n: int) -> list[str]:
    readers = readers_with_picks(settings, n)
    with session_factory(readers.engine).begin() as s:
        outbox.plan_deliveries(s, DAY, readers.picks)
    return readers.emails


def rows(settings: Settings) -> dict[str, tuple[str, str]]:
    """email -> (delivery status, subscriber status)"""
    engine = pipeline.open_store(settings, migrate=False)
    with session_factory(engine)() as s:
        found = s.execute(select(SubscriberRow.email, DeliveryRow.status, SubscriberRow.status).join(
            DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id))
        return {e: (d, sub) for e, d, sub in found}


def tally(name: str, server: SmtpTestServer, settings: Settings, good: list[str]) -> dict[str, int]:
    """The scenario's figures, printed on one line; ``good``: subscribers who should get their digest."""
    got = server.by_rcpt()
    state = rows(settings)
    lost = sum(1 for e in good if not got.get(e) and (state[e][0] not in ("planned", "sending")
                                                      or state[e][1] != "active"))
    figures = {
        "tries": len(server.tries),
        "lost": lost,
        "duplicates": sum(max(len(got.get(e, [])) - 1, 0) for e in state),
        "stuck": sum(1 for d, _ in state.values() if d == "sending"),
    }
    print(f"CHAOS {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return figures


def cli_env(s: Settings, server: SmtpTestServer, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": s.database_url, "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(server.port), "DIGEST_SMTP_SECURITY": "none", "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_SEND_LEASE_SECONDS": str(LEASE), **extra,
    }


SEND = [sys.executable, "-m", "digest.cli", "send", "--date", DAY.isoformat()]


# -- High 1: a relay-denying server must not wipe the list ------------------------------------------------

RELAY_DENIED = {
    "exim": "550 relay not permitted",
    "qmail": "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
}


@pytest.mark.parametrize("server_kind", sorted(RELAY_DENIED))
def test_relay_denying_server_stops_the_run_and_suppresses_nobody(
        settings: Settings, smtp: SmtpTestServer, server_kind: str) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 200)
    for e in emails:
        smtp.rcpt.always[e] = RELAY_DENIED[server_kind]
    with pytest.raises(ServerRefused, match="refuses mail for any recipient") as exc:
        send_day(pipeline.open_store(s), s, DAY)
    assert isinstance(exc.value, TooManySendErrors)
    assert exc.value.report.suppressed == 0 and exc.value.report.failed == 0 and exc.value.report.pending == 200
    state = rows(s)
    assert {d for d, _ in state.values()} == {"planned"}, "every row stays planned for the next run"
    assert {sub for _, sub in state.values()} == {"active"}, "nobody is suppressed"
    figures = tally(f"relay-denied ({server_kind})", smtp, s, emails)
    assert figures["tries"] == 2, "the second refusal of the same kind stops the run"
    assert figures["lost"] == 0 and figures["stuck"] == 0


def test_relay_denied_exits_3_in_the_cli(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 20)
    for e in emails:
        smtp.rcpt.always[e] = RELAY_DENIED["exim"]
    run = subprocess.run(SEND, env=cli_env(s, smtp), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "refuses mail for any recipient" in run.stderr and "relay not permitted" in run.stderr
    assert "Traceback" not in run.stderr
    assert {d for d, _ in rows(s).values()} == {"planned"}


def test_same_unknown_user_reply_for_many_recipients_stops_before_suppressing(
        settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp, send_max_consecutive_errors=5)
    emails = plan(s, 30)
    for e in emails:
        smtp.rcpt.always[e] = f"550 5.1.1 <{e}>: user unknown"
    with pytest.raises(ServerRefused, match="5 recipients in a row"):
        send_day(pipeline.open_store(s), s, DAY)
    assert {sub for _, sub in rows(s).values()} == {"active"}
    figures = tally("unknown user for everyone", smtp, s, emails)
    assert figures["tries"] == 5 and figures["lost"] == 0


def test_one_bad_mailbox_among_good_ones_is_suppressed(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 12)
    smtp.rcpt.always[emails[3]] = "550 5.1.1 no such user"
    smtp.rcpt.always[emails[7]] = "550 5.1.1 no such user"
    report = send_day(pipeline.open_store(s), s, DAY)
    assert (report.sent, report.failed, report.suppressed) == (10, 2, 2)
    state = rows(s)
    assert state[emails[3]] == ("failed", "bounced") and state[emails[7]] == ("failed", "bounced")
    figures = tally("two bad mailboxes", smtp, s, [e for e in emails if e not in (emails[3], emails[7])])
    assert figures == {"tries": 12, "lost": 0, "duplicates": 0, "stuck": 0}


# -- Low: a server refusing for policy leaves rows retryable ---------------------------------------------


@pytest.mark.parametrize("step, reply, kind", [
    ("rcpt", "554 5.7.1 Service unavailable; client host blocked by policy", Refusal.policy),
    ("mail", "530 5.7.0 Authentication required", Refusal.auth),
])
def test_policy_refusals_leave_rows_planned(settings: Settings, smtp: SmtpTestServer, step: str, reply: str,
                                            kind: Refusal) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 15)
    script = smtp.rcpt if step == "rcpt" else smtp.mail
    for e in (emails if step == "rcpt" else ["digest@localhost"]):
        script.always[e] = reply
    with pytest.raises(ServerRefused, match=kind.value):
        send_day(pipeline.open_store(s), s, DAY)
    assert {d for d, _ in rows(s).values()} == {"planned"}
    figures = tally(f"policy refusal ({step} {reply[:3]})", smtp, s, emails)
    assert figures["tries"] == 2 and figures["lost"] == 0
    script.always.clear()  # the operator fixes the server: the next run sends everything
    report = send_day(pipeline.open_store(s), s, DAY)
    assert report.sent == 15 and sorted(m.rcpt for m in smtp.messages) == sorted(emails)


# -- Medium 9: addresses the wire cannot carry never stop the run ----------------------------------------


def test_non_ascii_addresses_fail_alone_and_never_stop_the_run(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp, send_max_consecutive_errors=3)
    readers = readers_with_picks(s, 4)
    odd = [f"zoë{i}@example.org" for i in range(8)]
    with session_factory(readers.engine).begin() as session:  # stored before sign-up refused them
        rows_ = [SubscriberRow(email=e, status="active", interests=["x"]) for e in [*odd, "ada@exämple.org"]]
        session.add_all(rows_)
        session.flush()
        picks = {r.id: readers.picks[readers.ids[0]] for r in rows_}
    with session_factory(readers.engine).begin() as session:
        outbox.plan_deliveries(session, DAY, {**picks, **readers.picks})
    report = send_day(readers.engine, s, DAY)
    assert report.sent == 5 and report.failed == 8 and report.suppressed == 0
    got = smtp.by_rcpt()
    assert set(got) == {*readers.emails, "ada@xn--exmple-cua.org"}, "an IDN domain goes out as IDNA"
    assert got["ada@xn--exmple-cua.org"][0].parse()["To"].addresses[0].addr_spec == "ada@xn--exmple-cua.org"
    state = rows(s)
    assert all(state[e] == ("failed", "active") for e in odd)
    tally("non-ASCII addresses", smtp, s, readers.emails)


# -- Medium 10: unsubscribing after planning stops the mail ----------------------------------------------


def test_unsubscribed_after_planning_gets_nothing(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    readers = readers_with_picks(s, 10)
    with session_factory(readers.engine).begin() as session:
        outbox.plan_deliveries(session, DAY, readers.picks)
    with session_factory(readers.engine).begin() as session:
        for sid in readers.ids[:3]:
            unsubscribe_subscriber(session, sid)
    report = send_day(readers.engine, s, DAY)
    assert (report.sent, report.skipped) == (7, 3)
    assert sorted(m.rcpt for m in smtp.messages) == sorted(readers.emails[3:])
    assert [rows(s)[e][0] for e in readers.emails[:3]] == ["skipped"] * 3
    tally("unsubscribed after planning", smtp, s, readers.emails[3:])


# -- Low: a permanently greylisted recipient holds nobody back -------------------------------------------


def test_a_greylisted_recipient_is_left_for_the_next_run(settings: Settings, smtp: SmtpTestServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    s = send_settings(settings, smtp, send_retry_initial=1.2, send_retry_max=1.2,
                      send_recipient_deadline_seconds=2, send_deadline_seconds=600)
    emails = plan(s, 10)
    smtp.rcpt.always[emails[2]] = "451 4.7.1 Greylisted, please try again later"
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="digest.send"):
        report = send_day(pipeline.open_store(s), s, DAY)
    took = time.monotonic() - started
    assert (report.sent, report.deferred, report.pending) == (9, 1, 1)
    assert rows(s)[emails[2]] == ("planned", "active")
    assert any("waiting" in r.message and "to retry" in r.message for r in caplog.records), \
        "a wait says what it waits for"
    figures = tally(f"greylisted forever (run took {took:.1f} s)", smtp, s, emails)
    assert figures["lost"] == 0 and figures["stuck"] == 0
    del smtp.rcpt.always[emails[2]]
    assert send_day(pipeline.open_store(s), s, DAY).sent == 1


@pytest.mark.parametrize("reply", ["451 4.7.1 Greylisted, please try again later",
                                   "550 5.7.1 <reader2@example.org>: Recipient address rejected: Access denied"])
def test_one_recipient_refused_again_and_again_is_not_errors_in_a_row(settings: Settings, smtp: SmtpTestServer,
                                                                      reply: str) -> None:
    s = send_settings(settings, smtp, send_retry_initial=0.2, send_retry_max=0.2,
                      send_recipient_deadline_seconds=1.2, send_max_consecutive_errors=3)
    emails = plan(s, 6)
    smtp.rcpt.always[emails[2]] = reply
    report = send_day(pipeline.open_store(s), s, DAY)  # neither TooManySendErrors nor ServerRefused
    assert (report.sent, report.deferred, report.pending, report.failed) == (5, 1, 1, 0)
    assert smtp.tries.count("digest@localhost") >= 5 + 4, "the one recipient was tried again and again"
    assert rows(s)[emails[2]] == ("planned", "active")
    tally(f"one recipient refused again and again ({reply[:3]})", smtp, s, emails)


def test_digest_send_says_what_it_waits_for(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 3)
    smtp.rcpt.queued[emails[1]] = ["451 4.7.1 Greylisted, please try again later"]
    env = cli_env(s, smtp, DIGEST_SEND_RETRY_INITIAL="2", DIGEST_SEND_RETRY_MAX="2")
    run = subprocess.run(SEND, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "waiting" in run.stderr and "1 delivery to retry" in run.stderr and "until" in run.stderr
    assert "451 4.7.1 Greylisted" in run.stderr
    assert sorted(m.rcpt for m in smtp.messages) == sorted(emails)


# -- Low: no bidi control from a title reaches the Subject -----------------------------------------------


def test_bidi_controls_never_reach_the_subject(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    engine = pipeline.open_store(s)
    listing = load_listing_file(API_2025_06_05)
    evil = "Safe title \u202etxt.exe\u202c with \u2067isolates\u2069 and \u200fmarks\u200e"
    first = dataclasses.replace(listing.papers[0], title=evil)
    pipeline.store(engine, Listing(listing.listing_date, (first, *listing.papers[1:]), listing.source))
    with session_factory(engine).begin() as session:
        sid = add_subscriber(session, "ada@example.org", interests=["x"]).id
        assert sid is not None
        outbox.plan_deliveries(session, DAY, {sid: [Pick(first.arxiv_id, 1, 0.9, "interest: x")]})
    assert send_day(engine, s, DAY).sent == 1
    [received] = smtp.messages
    subject = received.parse()["Subject"]
    assert subject == "Daily Papers, 2025-06-05: Safe title txt.exe with isolates and marks"
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert not any(c in subject for c in bidi)
    tally("bidi title", smtp, s, ["ada@example.org"])


# -- Medium 5: a re-run within a dead sender's lease says what is still leased ----------------------------


def wait_for(server: SmtpTestServer, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(server.messages) < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)


def test_rerun_within_the_lease_counts_leased_rows(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 20)
    smtp.data_delay = 0.05
    env = cli_env(s, smtp, DIGEST_SEND_BATCH_SIZE="5", DIGEST_SEND_LEASE_SECONDS="8")
    proc = subprocess.Popen([*SEND, "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(smtp, 6, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = utcnow()
    state = rows(s)
    in_flight = sum(1 for d, _ in state.values() if d == "sending")
    left = sum(1 for d, _ in state.values() if d == "planned")
    assert in_flight >= 1
    again = subprocess.run([*SEND, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{in_flight} deliveries still leased by another sender until" in again.stderr
    report = json.loads(again.stdout)
    assert (report["sent"], report["pending"], report["leased"]) == (left, 0, in_flight), "not 'pending 0' alone"
    until = datetime.fromisoformat(report["leased_until"])
    assert killed_at < until
    time.sleep(max((until - utcnow()).total_seconds(), 0) + 0.3)
    last = json.loads(subprocess.run([*SEND, "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                                     timeout=120).stdout)
    assert last["resent"] == in_flight and last["leased"] == 0
    assert {d for d, _ in rows(s).values()} == {"sent"}
    figures = tally("kill -9, re-run within the lease", smtp, s, emails)
    assert figures["lost"] == 0 and figures["stuck"] == 0
    assert figures["duplicates"] <= s.send_mark_every


# -- Medium 6: a sender stalled past its lease gives its batch up ----------------------------------------


def test_a_sender_stalled_past_its_lease_does_not_send_twice(settings: Settings, smtp: SmtpTestServer) -> None:
    s = send_settings(settings, smtp)
    emails = plan(s, 40)
    smtp.data_delay = 0.05
    env = cli_env(s, smtp, DIGEST_SEND_BATCH_SIZE="5")
    stalled = subprocess.Popen([*SEND, "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(smtp, 7, stalled)
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        time.sleep(LEASE + 0.6)  # past the lease
        other = subprocess.run([*SEND, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    out, errs = stalled.communicate(timeout=120)
    assert stalled.returncode == 0, errs
    assert other.returncode == 0, other.stderr
    first, second = json.loads(out), json.loads(other.stdout)
    assert first["sent"] + second["sent"] == 40, (first, second)
    assert {d for d, _ in rows(s).values()} == {"sent"}
    ids = {e: {m.message_id for m in smtp.by_rcpt()[e]} for e in emails}
    assert all(len(v) == 1 for v in ids.values()), "a re-sent digest keeps its Message-ID"
    figures = tally(f"SIGSTOP past the lease (stalled sender lost {first['lost']})", smtp, s, emails)
    assert figures["lost"] == 0 and figures["stuck"] == 0
    assert figures["duplicates"] <= s.send_mark_every + 1, "at most the in-flight messages"
