"""The subscriber pages over HTTP (TestClient), on SQLite and PostgreSQL, with confirmation mails received by a
real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update
from typer.testing import CliRunner

from digest.config import Settings
from digest.models import Paper
from digest.signing import LinkSigner
from digest.store import create_db_engine, session_factory
from digest.store.papers import upsert_papers
from digest.render import build_context
from digest.store.subscribers import find_subscriber, remove_subscriber
from digest.store.tables import DeliveryRow, FeedbackRow, SubscriberRow
from digest.web import create_app
from digest.web.security import RateLimiter, client_key, trusted_networks

from .builders import SECRET, add_reader, confirm_link, link_key, smtp_settings, subscriber_row
from .smtp_server import SmtpTestServer

if TYPE_CHECKING:
    from httpx2 import Response  # what starlette's TestClient returns when httpx2 is installed (it is)

pytestmark = pytest.mark.all_backends
PUBLIC = "http://testserver"
PAPER = "2506.01234"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def web_settings(settings: Settings, smtp: SmtpTestServer) -> Settings:
    return smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET), public_url=PUBLIC,
                         mail_from="Papers Digest <digest@example.org>")


@pytest.fixture
def client(web_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings)) as c:
        yield c


@pytest.fixture
def signer(web_settings: Settings) -> LinkSigner:
    return LinkSigner.from_settings(web_settings)


def rows(settings: Settings) -> list[SubscriberRow]:
    with session_factory(create_db_engine(settings.database_url))() as session:
        return list(session.scalars(select(SubscriberRow).order_by(SubscriberRow.id)))


def feedback_rows(settings: Settings) -> list[tuple[int, str, int]]:
    with session_factory(create_db_engine(settings.database_url))() as session:
        return [(f.subscriber_id, f.arxiv_id, f.value) for f in session.scalars(select(FeedbackRow))]


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def subscribe(client: TestClient, email: str, interests: str = "video diffusion\nLLM reasoning",
              max_papers: str = "5", **headers: str) -> Response:
    token = csrf(client.get("/").text)
    return client.post("/subscribe", data={"email": email, "interests": interests, "max_papers": max_papers,
                                           "csrf_token": token}, headers=headers or None)


def confirm(client: TestClient, link: str, **headers: str) -> Response:
    """Follow a confirmation link like a person: open the page, press its button (a POST)."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    return client.post(link, data={"csrf_token": csrf(page.text)}, headers=headers or None)


def vote(client: TestClient, link: str) -> Response:
    """Follow a feedback link like a person: open the page, press its button (a POST)."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    return client.post(link.partition("?")[0], data={"csrf_token": csrf(page.text)})


def tamper(token: str) -> str:
    return token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")


# -- subscribe and confirm ----------------------------------------------------------------------------


def test_subscribe_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "<title>Subscribe - Papers Digest</title>" in r.text
    assert 'name="email"' in r.text and 'name="interests"' in r.text and 'name="max_papers"' in r.text
    assert csrf(r.text)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "same-origin"


def test_subscribe_double_opt_in(client: TestClient, web_settings: Settings, smtp: SmtpTestServer) -> None:
    r = subscribe(client, "Ada@Example.org", "video diffusion\n\n  LLM   reasoning \nvideo diffusion", "7")
    assert r.status_code == 200 and "Check your inbox" in r.text
    sub = subscriber_row(web_settings, "ada@example.org")
    assert (sub.status, sub.interests, sub.max_papers, sub.confirmed_at) == (
        "pending", ["video diffusion", "LLM reasoning"], 7, None)
    assert len(smtp.messages) == 1
    msg = smtp.messages[0].parse()
    assert msg["To"] == "ada@example.org" and "Confirm" in msg["Subject"] and msg["Message-ID"]
    link = confirm_link(smtp, "ada@example.org")
    assert link.startswith(f"{PUBLIC}/confirm/")

    button = csrf(client.get(link).text)
    r = client.post(link, data={"csrf_token": button})
    assert r.status_code == 200 and "subscribed" in r.text
    sub = subscriber_row(web_settings, "ada@example.org")
    assert sub.status == "active" and sub.confirmed_at is not None
    first = sub.confirmed_at
    # following it twice, or pressing the button again, is harmless
    again = client.get(link)
    assert again.status_code == 200 and "subscribed" in again.text
    assert client.post(link, data={"csrf_token": button}).status_code == 200
    assert subscriber_row(web_settings, "ada@example.org").confirmed_at == first


def test_a_confirmation_get_changes_nothing(client: TestClient, web_settings: Settings, smtp: SmtpTestServer) -> None:
    """Issue 10: mail link scanners follow every link; only the button's POST (with its CSRF token) confirms."""
    subscribe(client, "scan@example.org", "video diffusion", "7")
    link = confirm_link(smtp, "scan@example.org")
    for _ in range(3):
        page = client.get(link)
        assert page.status_code == 200 and 'method="post"' in page.text and csrf(page.text)
        assert "video diffusion" in page.text  # what confirming will start
    assert subscriber_row(web_settings, "scan@example.org").status == "pending"
    for data, headers in [({}, None), ({"csrf_token": csrf(client.get("/").text)}, None),
                          ({"csrf_token": csrf(client.get(link).text)}, {"Origin": "https://evil.example"})]:
        r = client.post(link, data=data, headers=headers)
        assert r.status_code == 403
    assert subscriber_row(web_settings, "scan@example.org").status == "pending"
    assert confirm(client, link, Origin=PUBLIC).status_code == 200
    assert subscriber_row(web_settings, "scan@example.org").status == "active"


def test_a_confirmation_older_than_an_unsubscribe_is_stale(
    client: TestClient, web_settings: Settings, smtp: SmtpTestServer, signer: LinkSigner
) -> None:
    """Issue 10: confirm, unsubscribe, then click the old confirmation link again: it must not
    re-activate; the unsubscribe link keeps working whatever happens."""
    subscribe(client, "stale@example.org")
    link = confirm_link(smtp, "stale@example.org")
    page = client.get(link)
    assert confirm(client, link).status_code == 200
    sid = subscriber_row(web_settings, "stale@example.org").id
    unsubscribe_url = signer.unsubscribe_url(sid, key=link_key(web_settings, sid))
    time.sleep(1.05)  # issued-at is in whole seconds: the unsubscribe comes a second after the link
    assert client.post(unsubscribe_url, content=b"List-Unsubscribe=One-Click", headers=FORM).status_code == 200
    assert subscriber_row(web_settings, "stale@example.org").status == "unsubscribed"

    again = client.get(link)
    assert again.status_code == 400 and "out of date" in again.text and 'method="post"' not in again.text
    r = client.post(link, data={"csrf_token": csrf(page.text)})  # the button of a page left open
    assert r.status_code == 400 and "out of date" in r.text
    assert subscriber_row(web_settings, "stale@example.org").status == "unsubscribed"
    assert client.post(unsubscribe_url, content=b"List-Unsubscribe=One-Click", headers=FORM).status_code == 200


def deliveries(settings: Settings) -> list[tuple[str, str, int, str | None]]:
    with session_factory(create_db_engine(settings.database_url))() as session:
        return [(d.kind, d.status, d.attempts, d.last_error)
                for d in session.scalars(select(DeliveryRow).order_by(DeliveryRow.id))]


def test_confirmation_goes_through_the_outbox_with_the_digest_headers(
    client: TestClient, web_settings: Settings, smtp: SmtpTestServer
) -> None:
    subscribe(client, "ada@example.org")
    assert deliveries(web_settings) == [("confirm", "sent", 1, None)]
    msg = smtp.messages[0].parse()
    assert re.fullmatch(r"<confirm-\d{4}-\d\d-\d\d-s1-[0-9a-f]{12}@papers-digest\.localhost>", msg["Message-ID"])
    assert msg["Auto-Submitted"] == "auto-generated" and msg["List-Unsubscribe"] is None
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_confirmation_refused_by_the_server_is_retried_not_lost(
    web_settings: Settings, smtp: SmtpTestServer
) -> None:
    """A 451 at sign-up leaves the confirmation in the outbox with its error; the web process's retry
    loop sends it once the retry is due."""
    fast = web_settings.model_copy(update={"web_confirm_retry_seconds": 0.2, "send_retry_initial": 3.0})
    smtp.rcpt.queued["late@example.org"] = ["451 4.7.1 greylisted, try again later"]
    with TestClient(create_app(fast)) as c:
        subscribe(c, "late@example.org")
        # the first attempt is the request's background task, or the retry loop when it woke first
        deadline = time.monotonic() + 5
        while deliveries(fast)[0][1] == "sending" and time.monotonic() < deadline:
            time.sleep(0.02)
        ((kind, status, attempts, error),) = deliveries(fast)
        assert (kind, status, attempts) == ("confirm", "planned", 1) and error and "451" in error
        assert smtp.messages == []
        deadline = time.monotonic() + 15
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    assert [m.rcpt for m in smtp.messages] == ["late@example.org"]
    assert deliveries(fast) == [("confirm", "sent", 2, None)]
    assert confirm_link(smtp, "late@example.org").startswith(f"{PUBLIC}/confirm/")


def test_duplicate_signup_does_not_leak(client: TestClient, web_settings: Settings, smtp: SmtpTestServer) -> None:
    new = subscribe(client, "dup@example.org")
    again_pending = subscribe(client, "dup@example.org", "something else", "50")
    assert new.status_code == again_pending.status_code == 200
    assert new.text == again_pending.text
    assert len(rows(web_settings)) == 1
    assert subscriber_row(web_settings, "dup@example.org").interests == ["video diffusion", "LLM reasoning"]  # unchanged
    assert len(smtp.messages) == 1  # at most one confirmation per address and day (one outbox row)
    confirm(client, confirm_link(smtp, "dup@example.org"))
    assert subscriber_row(web_settings, "dup@example.org").status == "active"

    already = subscribe(client, "DUP@example.org")
    assert already.status_code == 200 and already.text == new.text
    assert len(smtp.messages) == 1  # an active address gets no new mail
    other = subscribe(client, "other@example.org")
    assert other.text.replace("other@example.org", "dup@example.org") == new.text
    assert len(rows(web_settings)) == 2


def test_resubscribe_after_unsubscribe_needs_confirmation(
    client: TestClient, web_settings: Settings, smtp: SmtpTestServer, signer: LinkSigner
) -> None:
    sid = add_reader(web_settings, "back@example.org", "unsubscribed")
    subscribe(client, "back@example.org", "video diffusion\nLLM reasoning", "5")
    row = subscriber_row(web_settings, "back@example.org")
    # nothing changes before confirming: anyone may type this address
    assert (row.status, row.interests, row.max_papers) == ("unsubscribed", ["robotics"], 10)
    confirm(client, confirm_link(smtp, "back@example.org"))
    row = subscriber_row(web_settings, "back@example.org")
    assert row.status == "active" and row.id == sid
    # issue 10: what was typed at the new sign-up is kept, applied by the confirmation
    assert (row.interests, row.max_papers) == (["video diffusion", "LLM reasoning"], 5)


def test_signing_up_again_while_pending_keeps_the_newest_interests(
    client: TestClient, web_settings: Settings, smtp: SmtpTestServer
) -> None:
    subscribe(client, "twice@example.org", "robotics", "3")
    subscribe(client, "twice@example.org", "graph neural networks\nprotein folding", "12")
    row = subscriber_row(web_settings, "twice@example.org")
    assert (row.status, row.interests, row.max_papers) == ("pending", ["robotics"], 3)
    link = confirm_link(smtp, "twice@example.org")
    assert "protein folding" in client.get(link).text  # the page says what confirming starts
    confirm(client, link)
    row = subscriber_row(web_settings, "twice@example.org")
    assert (row.status, row.interests, row.max_papers) == ("active", ["graph neural networks", "protein folding"], 12)


@pytest.mark.parametrize("address", ["not-an-address", "a@", "two@@example.org", "<script>alert(1)</script>@x.org"])
def test_invalid_address(client: TestClient, web_settings: Settings, smtp: SmtpTestServer, address: str) -> None:
    r = subscribe(client, address)
    assert r.status_code == 400
    assert "valid email address" in r.text
    assert "<script>alert" not in r.text  # shown escaped
    assert rows(web_settings) == [] and smtp.messages == []


def test_non_ascii_address_refused_at_sign_up(client: TestClient, web_settings: Settings, smtp: SmtpTestServer) -> None:
    """Issue 11 Medium-9: the sender cannot deliver it, so the form says so and stores nothing."""
    r = subscribe(client, "jürgen@example.org")
    assert r.status_code == 400 and "non-ASCII" in r.text and 'value="jürgen@example.org"' in r.text
    r = subscribe(client, "ada@bücher.de")
    assert r.status_code == 400 and "ada@xn--bcher-kva.de" in r.text  # what to type instead
    assert rows(web_settings) == [] and smtp.messages == []


@pytest.mark.parametrize("max_papers", ["0", "101", "ten", "-3"])
def test_invalid_max_papers(client: TestClient, web_settings: Settings, max_papers: str) -> None:
    r = subscribe(client, "m@example.org", max_papers=max_papers)
    assert r.status_code == 400 and "papers per mail" in r.text
    assert rows(web_settings) == []


def test_subscribe_csrf(client: TestClient, web_settings: Settings, smtp: SmtpTestServer) -> None:
    data = {"email": "c@example.org", "interests": "x", "max_papers": "5"}
    assert client.post("/subscribe", data=data).status_code == 403  # no token
    assert client.post("/subscribe", data={**data, "csrf_token": tamper(csrf(client.get("/").text))}).status_code == 403
    r = subscribe(client, "c@example.org", Origin="https://evil.example")  # valid token, foreign origin
    assert r.status_code == 403
    r = subscribe(client, "c@example.org", Referer="https://evil.example/page")
    assert r.status_code == 403
    assert 'value="c@example.org"' in r.text  # the form comes back filled, with a fresh token
    assert rows(web_settings) == [] and smtp.messages == []
    assert subscribe(client, "c@example.org", Origin=PUBLIC).status_code == 200


def test_rate_limit(client: TestClient, web_settings: Settings) -> None:
    for i in range(5):
        assert subscribe(client, f"r{i}@example.org").status_code == 200
    r = subscribe(client, "r5@example.org")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert len(rows(web_settings)) == 5
    assert client.get("/").status_code == 200  # pages stay readable


def test_oversized_form_refused(client: TestClient, web_settings: Settings) -> None:
    r = client.post("/subscribe", data={"email": "big@example.org", "interests": "x" * 70_000})
    assert r.status_code == 413
    assert rows(web_settings) == []


def test_one_confirmation_per_recipient_whatever_the_client(web_settings: Settings, smtp: SmtpTestServer) -> None:
    """Issue 11 Medium-8: 40 sign-ups of one address from 40 client addresses mail it once."""
    app = create_app(web_settings)
    for i in range(40):
        with TestClient(app, client=(f"198.51.100.{i + 1}", 40000)) as c:
            assert subscribe(c, "victim@example.org").status_code == 200
    assert [m.rcpt for m in smtp.messages] == ["victim@example.org"]
    assert len(deliveries(web_settings)) == 1


def _age_confirmation(settings: Settings, hours: float) -> None:
    """Make the stored confirmation look ``hours`` old (and, past midnight, of an earlier day)."""
    when = datetime.now(timezone.utc) - timedelta(hours=hours)
    with session_factory(create_db_engine(settings.database_url)).begin() as session:
        session.execute(update(DeliveryRow).values(created_at=when, digest_date=when.date() - timedelta(days=1)))


def test_the_confirmation_interval_holds_across_midnight(client: TestClient, web_settings: Settings,
                                                         smtp: SmtpTestServer) -> None:
    """At most one confirmation per DIGEST_CONFIRM_INTERVAL_HOURS (24): one sent at 23:00 is not followed
    by another at 01:00 because the day changed; after the interval, a new sign-up mails again."""
    subscribe(client, "night@example.org")
    _age_confirmation(web_settings, hours=2)  # sent "yesterday", two hours ago
    subscribe(client, "night@example.org")
    assert len(smtp.messages) == 1
    _age_confirmation(web_settings, hours=25)
    subscribe(client, "night@example.org")
    assert [m.rcpt for m in smtp.messages] == ["night@example.org"] * 2


def test_forwarded_for_is_trusted_only_from_configured_proxies(web_settings: Settings) -> None:
    """The rate limiter keys on the TCP peer, and on X-Forwarded-For only when the peer is a configured
    proxy (DIGEST_WEB_TRUSTED_PROXIES): a client cannot dodge the limit by inventing addresses."""
    spoofed = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(6)]
    with TestClient(create_app(web_settings), client=("192.0.2.10", 40000)) as c:  # no proxy configured
        codes = [subscribe(c, f"s{i}@example.org", **h).status_code for i, h in enumerate(spoofed)]
    assert codes == [200] * 5 + [429]
    behind = web_settings.model_copy(update={"web_trusted_proxies": ["10.0.0.0/8"]})
    with TestClient(create_app(behind), client=("10.1.2.3", 40000)) as c:  # the proxy: one client each
        assert [subscribe(c, f"p{i}@example.org", **h).status_code for i, h in enumerate(spoofed)] == [200] * 6
        same = {"X-Forwarded-For": "198.51.100.7, 203.0.113.99"}  # the proxy appended the real client
        codes = [subscribe(c, f"q{i}@example.org", **same).status_code for i in range(6)]
    assert codes == [200] * 5 + [429]


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("192.0.2.1", "203.0.113.5", "192.0.2.1"),  # not a proxy: the header is the client's invention
    ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
    ("10.0.0.2", "1.1.1.1, 203.0.113.5", "203.0.113.5"),  # the left part came from the client: ignored
    ("10.0.0.2", "203.0.113.5, 10.0.0.9", "203.0.113.5"),  # two proxies in a row
    ("10.0.0.2", "10.0.0.9, 10.0.0.8", "10.0.0.9"),  # every hop a proxy: the farthest one
    ("10.0.0.2", "", "10.0.0.2"),
    ("10.0.0.2", "not-an-address", "10.0.0.2"),
    ("fd00::1", "2001:db8::7", "2001:db8::7"),
    (None, "203.0.113.5", "unknown"),
])
def test_client_key(peer: str | None, forwarded: str, client: str) -> None:
    assert client_key(peer, forwarded, trusted_networks(["10.0.0.0/8", "fd00::/8"])) == client


def test_trusted_proxies_setting_takes_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_WEB_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert Settings(_env_file=None).web_trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]  # type: ignore[call-arg]
    monkeypatch.setenv("DIGEST_WEB_TRUSTED_PROXIES", "")
    assert Settings(_env_file=None).web_trusted_proxies == []  # type: ignore[call-arg]
    monkeypatch.setenv("DIGEST_WEB_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example")
    with pytest.raises(ValueError, match="proxy.example"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_rate_limiter_window() -> None:
    limiter = RateLimiter(limit=2, window=60)
    assert limiter.hit("a", now=0) is None and limiter.hit("a", now=1) is None
    assert limiter.hit("a", now=2) == pytest.approx(58)
    assert limiter.hit("b", now=2) is None  # per client
    assert limiter.hit("a", now=60.5) is None  # the first hit left the window


# -- tokens -------------------------------------------------------------------------------------------


def test_tampered_and_foreign_tokens_change_nothing(
    client: TestClient, web_settings: Settings, signer: LinkSigner
) -> None:
    pending = add_reader(web_settings, "p@example.org", "pending")
    active = add_reader(web_settings, "a@example.org", "active")
    k_pending, k_active = link_key(web_settings, pending), link_key(web_settings, active)
    unsub = signer.token("unsubscribe", active, key=k_active)
    prefs = signer.token("preferences", active, key=k_active)
    cases = [
        ("GET", f"/confirm/{tamper(signer.token('confirm', pending, key=k_pending))}"),
        ("POST", f"/confirm/{tamper(signer.token('confirm', pending, key=k_pending))}"),
        ("POST", f"/confirm/{signer.token('confirm', pending, key=k_active)}"),  # another subscriber's key
        ("GET", f"/confirm/{signer.token('unsubscribe', pending, key=k_pending)}"),  # foreign purpose
        ("GET", f"/unsubscribe/{tamper(unsub)}"),
        ("POST", f"/unsubscribe/{tamper(unsub)}"),
        ("POST", f"/unsubscribe/{signer.token('confirm', active, key=k_active)}"),
        ("POST", f"/unsubscribe/{prefs}"),
        ("GET", f"/feedback/{tamper(signer.token('feedback', active, key=k_active, p=PAPER, v='up'))}?paper={PAPER}&v=up"),
        ("GET", f"/feedback/{signer.token('unsubscribe', active, key=k_active)}?paper={PAPER}&v=up"),
        ("POST", f"/feedback/{tamper(signer.token('feedback', active, key=k_active, p=PAPER, v='up'))}"),
        ("GET", f"/preferences/{tamper(prefs)}"),
        ("GET", f"/preferences/{unsub}"),
        ("POST", f"/preferences/{tamper(prefs)}"),
        ("GET", "/confirm/garbage"),
    ]
    for method, url in cases:
        r = client.request(method, url, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert r.status_code == 400, (method, url)
        assert "does not work" in r.text
    assert {r.email: r.status for r in rows(web_settings)} == {"p@example.org": "pending", "a@example.org": "active"}
    assert subscriber_row(web_settings, "a@example.org").interests == ["robotics"]
    assert feedback_rows(web_settings) == []


def test_links_of_a_removed_subscriber_never_act_on_another(
    client: TestClient, web_settings: Settings, signer: LinkSigner
) -> None:
    """Issue 11 High-4: add, remove, add another. The first one's links give the "does not work" page and
    change nothing, for the next subscriber and even for one stored under the very same id (a database
    whose ids were reused before they were made unique)."""
    first = add_reader(web_settings, "first@example.org")
    key = link_key(web_settings, first)
    old = {"preferences": signer.preferences_url(first, key=key), "unsubscribe": signer.unsubscribe_url(first, key=key)}
    with session_factory(create_db_engine(web_settings.database_url)).begin() as session:
        remove_subscriber(session, "first@example.org")
    second = add_reader(web_settings, "second@example.org")
    assert second != first  # ids are never given out twice
    with session_factory(create_db_engine(web_settings.database_url)).begin() as session:
        session.add(SubscriberRow(id=first, email="same-id@example.org", status="active", interests=["robotics"],
                                  negative_interests=[], include_keywords=[], exclude_keywords=[], seed_papers=[]))
    for method, url in [("GET", old["preferences"]), ("POST", old["preferences"]), ("GET", old["unsubscribe"]),
                        ("POST", old["unsubscribe"])]:
        r = client.request(method, url, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert r.status_code == 400 and "does not work" in r.text, (method, url)
        assert "same-id@example.org" not in r.text and "second@example.org" not in r.text
    assert {r.email: r.status for r in rows(web_settings)} == {"second@example.org": "active",
                                                              "same-id@example.org": "active"}


def test_expired_confirm_link(client: TestClient, web_settings: Settings, signer: LinkSigner,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    sid = add_reader(web_settings, "late@example.org", "pending")
    monkeypatch.setattr("digest.web.routes.CONFIRM_MAX_AGE", -1)
    url = signer.confirm_url(sid, key=link_key(web_settings, sid))
    for r in (client.get(url), client.post(url, data={"csrf_token": "x"})):
        assert r.status_code == 400 and "expired" in r.text
    assert subscriber_row(web_settings, "late@example.org").status == "pending"


# -- unsubscribe --------------------------------------------------------------------------------------


def test_unsubscribe_get_shows_a_button_only(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "u@example.org")
    r = client.get(signer.unsubscribe_url(sid, key=link_key(web_settings, sid)))
    assert r.status_code == 200 and "<title>Unsubscribe</title>" in r.text
    assert 'method="post"' in r.text and 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert subscriber_row(web_settings, "u@example.org").status == "active"


def test_one_click_unsubscribe_is_idempotent(client: TestClient, web_settings: Settings,
                                             signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "u@example.org")
    url = signer.unsubscribe_url(sid, key=link_key(web_settings, sid))
    # a mail client's RFC 8058 POST: no cookies, no CSRF token, no Origin
    for _ in range(2):
        r = client.post(url, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert r.status_code == 200 and "unsubscribed" in r.text
        assert subscriber_row(web_settings, "u@example.org").status == "unsubscribed"
    assert not client.cookies


# -- feedback -----------------------------------------------------------------------------------------


def _store_paper(settings: Settings) -> None:
    with session_factory(create_db_engine(settings.database_url)).begin() as session:
        upsert_papers(session, [Paper(PAPER, "A paper", "An abstract.", ("Ada",), date(2026, 8, 18))])


def test_feedback_recorded_from_the_token(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    _store_paper(web_settings)
    sid = add_reader(web_settings, "f@example.org")
    up = signer.feedback_url(sid, PAPER, "up", key=link_key(web_settings, sid))
    r = vote(client, up)
    assert r.status_code == 200 and "Thanks" in r.text and "<title>" in r.text
    assert f"{PUBLIC}/preferences/" in r.text
    assert feedback_rows(web_settings) == [(sid, PAPER, 1)]
    assert vote(client, up).status_code == 200  # repeating a vote is harmless
    assert feedback_rows(web_settings) == [(sid, PAPER, 1)]
    # the query string is for humans: changing it does not change the vote
    vote(client, up.replace("v=up", "v=down").replace(f"paper={PAPER}", "paper=9999.99999"))
    assert feedback_rows(web_settings) == [(sid, PAPER, 1)]
    assert vote(client, signer.feedback_url(sid, PAPER, "down", key=link_key(web_settings, sid))).status_code == 200
    assert feedback_rows(web_settings) == [(sid, PAPER, -1)]  # the latest vote wins


def test_a_feedback_get_records_nothing(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    """Issue 13: link scanners only GET; the vote is the button's POST, with its CSRF token."""
    _store_paper(web_settings)
    sid = add_reader(web_settings, "f@example.org")
    up = signer.feedback_url(sid, PAPER, "up", key=link_key(web_settings, sid))
    for _ in range(3):
        page = client.get(up)
        assert page.status_code == 200 and 'method="post"' in page.text and "A paper" in page.text
    assert feedback_rows(web_settings) == []
    action = up.partition("?")[0]
    other = add_reader(web_settings, "g@example.org")
    other_page = client.get(signer.feedback_url(other, PAPER, "up", key=link_key(web_settings, other)))
    for data in ({}, {"csrf_token": csrf(other_page.text)}, {"csrf_token": csrf(client.get("/").text)}):
        assert client.post(action, data=data).status_code == 403
    assert feedback_rows(web_settings) == []


def test_feedback_for_unknown_paper(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "f@example.org")
    url = signer.feedback_url(sid, "2401.99999", "up", key=link_key(web_settings, sid))
    assert client.get(url).status_code == 404
    r = client.post(url.partition("?")[0], data={"csrf_token": "anything"})
    assert r.status_code == 404
    assert feedback_rows(web_settings) == []


# -- preferences --------------------------------------------------------------------------------------


def _prefs_form(**over: str) -> dict[str, str]:
    return {"interests": "graph neural networks\n<b>bold</b>", "negative_interests": "survey papers",
            "include_keywords": "", "exclude_keywords": "benchmark\nsurvey", "max_papers": "3",
            "frequency": "weekly", **over}


def test_preferences_saved(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "pref@example.org")
    url = signer.preferences_url(sid, key=link_key(web_settings, sid))
    page = client.get(url)
    assert page.status_code == 200 and "<title>Preferences - Papers Digest</title>" in page.text
    assert "robotics" in page.text and "pref@example.org" in page.text
    assert f'action="/unsubscribe/' in page.text  # the unsubscribe button
    r = client.post(url, data={**_prefs_form(), "csrf_token": csrf(page.text)}, headers={"Origin": PUBLIC})
    assert r.status_code == 200 and "saved" in r.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in r.text and "<b>bold</b>" not in r.text
    sub = subscriber_row(web_settings, "pref@example.org")
    assert sub.interests == ["graph neural networks", "<b>bold</b>"]
    assert (sub.negative_interests, sub.include_keywords, sub.exclude_keywords) == (
        ["survey papers"], [], ["benchmark", "survey"])
    assert (sub.max_papers, sub.frequency, sub.status) == (3, "weekly", "active")


def test_preferences_links_expire_and_each_mail_brings_a_fresh_one(
    client: TestClient, web_settings: Settings
) -> None:
    """Issue 11 Low: a preferences link works DIGEST_PREFERENCES_LINK_DAYS (90) days; every digest is
    rendered with a newly signed one."""
    sid = add_reader(web_settings, "old@example.org")
    key = link_key(web_settings, sid)
    days = web_settings.preferences_link_days
    assert days == 90
    aged = LinkSigner(SECRET, PUBLIC, clock=lambda: time.time() - (days + 1) * 86400)
    old = aged.preferences_url(sid, key=key)
    for r in (client.get(old), client.post(old, data={**_prefs_form(), "csrf_token": "x"})):
        assert r.status_code == 400 and "expired" in r.text and "latest digest" in r.text
    assert subscriber_row(web_settings, "old@example.org").interests == ["robotics"]
    recent = LinkSigner(SECRET, PUBLIC, clock=lambda: time.time() - (days - 1) * 86400)
    assert client.get(recent.preferences_url(sid, key=key)).status_code == 200
    with session_factory(create_db_engine(web_settings.database_url))() as session:
        sub = find_subscriber(session, sid)
    assert sub is not None
    ctx = build_context(sub, date(2026, 8, 18), [], web_settings, LinkSigner.from_settings(web_settings))
    assert client.get(ctx.preferences_url).status_code == 200
    assert LinkSigner.from_settings(web_settings).verify(
        "preferences", ctx.preferences_url.rsplit("/", 1)[1])["issued_at"] >= int(time.time()) - 5


def selected(page: str, name: str) -> str:
    """The value of the selected option of the form's ``<select name=...>``."""
    block = re.search(rf'<select id="{name}" name="{name}">(.*?)</select>', page, re.S)
    assert block, page
    chosen = re.findall(r'<option value="([^"]*)" selected>', block.group(1))
    assert len(chosen) == 1, block.group(1)
    return chosen[0]


def test_preferences_weekly_on_a_weekday_round_trip(client: TestClient, web_settings: Settings,
                                                    signer: LinkSigner) -> None:
    """The weekday select: shown with the stored weekday (Friday before one is chosen), saved for a weekly
    digest, dropped for a daily one; papers per mail follow the cadence while left at its default."""
    sid = add_reader(web_settings, "wk@example.org")
    url = signer.preferences_url(sid, key=link_key(web_settings, sid))
    page = client.get(url).text
    assert (selected(page, "frequency"), selected(page, "weekday")) == ("daily", "fri")
    assert ">Thursday</option>" in page and "arrives the morning after" in page

    def save(**form: str) -> str:
        r = client.post(url, data={**_prefs_form(**{"max_papers": "10", **form}), "csrf_token": csrf(client.get(url).text)},
                        headers={"Origin": PUBLIC})
        assert r.status_code == 200 and "saved" in r.text, r.text
        return r.text

    page = save(frequency="weekly", weekday="thu")
    sub = subscriber_row(web_settings, "wk@example.org")
    assert (sub.frequency, sub.weekday, sub.max_papers) == ("weekly", 3, 25)
    again = client.get(url).text
    for shown in (page, again):
        assert (selected(shown, "frequency"), selected(shown, "weekday")) == ("weekly", "thu")
        assert 'name="max_papers" min="1" max="100" value="25"' in shown
    save(frequency="daily", weekday="thu", max_papers="25")
    sub = subscriber_row(web_settings, "wk@example.org")
    assert (sub.frequency, sub.weekday, sub.max_papers) == ("daily", None, 10)
    r = client.post(url, data={**_prefs_form(weekday="someday"), "csrf_token": csrf(client.get(url).text)},
                    headers={"Origin": PUBLIC})
    assert r.status_code == 400 and "weekday must be one of Monday to Sunday" in r.text
    assert subscriber_row(web_settings, "wk@example.org").frequency == "daily"


def test_preferences_follows_and_only_with_code_round_trip(client: TestClient, web_settings: Settings,
                                                          signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "fol@example.org")
    url = signer.preferences_url(sid, key=link_key(web_settings, sid))
    page = client.get(url).text
    assert 'name="follow_orgs"' in page and 'name="follow_authors"' in page
    assert 'name="only_with_code">' in page  # unchecked
    r = client.post(url, data={**_prefs_form(follow_orgs="nvidia\n\nShanghai AI Laboratory\nNVIDIA",
                                             follow_authors="Jane Doe", only_with_code="on"),
                               "csrf_token": csrf(page)}, headers={"Origin": PUBLIC})
    assert r.status_code == 200 and "saved" in r.text, r.text
    sub = subscriber_row(web_settings, "fol@example.org")
    assert (sub.follow_orgs, sub.follow_authors, sub.only_with_code) == (
        ["nvidia", "Shanghai AI Laboratory"], ["Jane Doe"], True)
    again = client.get(url).text
    assert ">nvidia\nShanghai AI Laboratory</textarea>" in again and ">Jane Doe</textarea>" in again
    assert 'name="only_with_code" checked>' in again
    r = client.post(url, data={**_prefs_form(), "csrf_token": csrf(again)}, headers={"Origin": PUBLIC})
    assert r.status_code == 200
    sub = subscriber_row(web_settings, "fol@example.org")
    assert (sub.follow_orgs, sub.follow_authors, sub.only_with_code) == ([], [], False)


@pytest.mark.parametrize("bad", [{"frequency": "hourly"}, {"max_papers": "0"}, {"interests": "x" * 300}])
def test_preferences_invalid_values(client: TestClient, web_settings: Settings, signer: LinkSigner,
                                    bad: dict[str, str]) -> None:
    sid = add_reader(web_settings, "pref@example.org")
    url = signer.preferences_url(sid, key=link_key(web_settings, sid))
    r = client.post(url, data={**_prefs_form(**bad), "csrf_token": csrf(client.get(url).text)})
    assert r.status_code == 400 and 'class="error"' in r.text
    sub = subscriber_row(web_settings, "pref@example.org")
    assert (sub.interests, sub.max_papers, sub.frequency) == (["robotics"], 10, "daily")


def test_preferences_csrf(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    a = add_reader(web_settings, "a@example.org")
    b = add_reader(web_settings, "b@example.org")
    url_a, url_b = signer.preferences_url(a, key=link_key(web_settings, a)), signer.preferences_url(b, key=link_key(web_settings, b))
    token_b = csrf(client.get(url_b).text)
    for data, headers in [
        (_prefs_form(), None),  # no token
        ({**_prefs_form(), "csrf_token": token_b}, None),  # another subscriber's form token
        ({**_prefs_form(), "csrf_token": csrf(client.get("/").text)}, None),  # the subscribe form's token
        ({**_prefs_form(), "csrf_token": csrf(client.get(url_a).text)}, {"Origin": "https://evil.example"}),
    ]:
        r = client.post(url_a, data=data, headers=headers)
        assert r.status_code == 403 and "Nothing was saved" in r.text
    assert subscriber_row(web_settings, "a@example.org").interests == ["robotics"]


# -- the command ---------------------------------------------------------------------------------------


def test_cli_web_refuses_to_start_without_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.cli import app

    monkeypatch.chdir(tmp_path)  # no .env
    result = CliRunner().invoke(app, ["web", "--port", "0"], env={
        "DIGEST_SECRET_KEY": None, "DIGEST_DEMO_SECRET_FALLBACK": None,
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    })
    assert result.exit_code == 2
    assert "DIGEST_SECRET_KEY" in result.output and len(result.output.strip().splitlines()) == 1
