"""The subscriber pages over HTTP (TestClient), on SQLite and PostgreSQL, with confirmation mails received by a
real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from digest.config import Settings
from digest.models import Paper
from digest.signing import LinkSigner
from digest.store import create_db_engine, session_factory
from digest.store.papers import upsert_papers
from digest.store.tables import DeliveryRow, FeedbackRow, SubscriberRow
from digest.web import create_app
from digest.web.security import RateLimiter

from .builders import SECRET, add_reader, confirm_link, smtp_settings, subscriber_row
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

    r = client.get(link)
    assert r.status_code == 200 and "subscribed" in r.text
    sub = subscriber_row(web_settings, "ada@example.org")
    assert sub.status == "active" and sub.confirmed_at is not None
    first = sub.confirmed_at
    assert client.get(link).status_code == 200  # following it twice is harmless
    assert subscriber_row(web_settings, "ada@example.org").confirmed_at == first


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
    client.get(confirm_link(smtp, "dup@example.org"))
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
    subscribe(client, "back@example.org")
    assert subscriber_row(web_settings, "back@example.org").status == "unsubscribed"  # nothing changes before confirming
    client.get(confirm_link(smtp, "back@example.org"))
    assert subscriber_row(web_settings, "back@example.org").status == "active"
    assert subscriber_row(web_settings, "back@example.org").id == sid


@pytest.mark.parametrize("address", ["not-an-address", "a@", "two@@example.org", "<script>alert(1)</script>@x.org"])
def test_invalid_address(client: TestClient, web_settings: Settings, smtp: SmtpTestServer, address: str) -> None:
    r = subscribe(client, address)
    assert r.status_code == 400
    assert "valid email address" in r.text
    assert "<script>alert" not in r.text  # shown escaped
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
    unsub = signer.token("unsubscribe", active)
    prefs = signer.token("preferences", active)
    cases = [
        ("GET", f"/confirm/{tamper(signer.token('confirm', pending))}"),
        ("GET", f"/confirm/{signer.token('unsubscribe', pending)}"),  # foreign purpose
        ("GET", f"/unsubscribe/{tamper(unsub)}"),
        ("POST", f"/unsubscribe/{tamper(unsub)}"),
        ("POST", f"/unsubscribe/{signer.token('confirm', active)}"),
        ("POST", f"/unsubscribe/{prefs}"),
        ("GET", f"/feedback/{tamper(signer.token('feedback', active, p=PAPER, v='up'))}?paper={PAPER}&v=up"),
        ("GET", f"/feedback/{signer.token('unsubscribe', active)}?paper={PAPER}&v=up"),
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


def test_expired_confirm_link(client: TestClient, web_settings: Settings, signer: LinkSigner,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    sid = add_reader(web_settings, "late@example.org", "pending")
    monkeypatch.setattr("digest.web.routes.CONFIRM_MAX_AGE", -1)
    r = client.get(signer.confirm_url(sid))
    assert r.status_code == 400 and "expired" in r.text
    assert subscriber_row(web_settings, "late@example.org").status == "pending"


# -- unsubscribe --------------------------------------------------------------------------------------


def test_unsubscribe_get_shows_a_button_only(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "u@example.org")
    r = client.get(signer.unsubscribe_url(sid))
    assert r.status_code == 200 and "<title>Unsubscribe</title>" in r.text
    assert 'method="post"' in r.text and 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert subscriber_row(web_settings, "u@example.org").status == "active"


def test_one_click_unsubscribe_is_idempotent(client: TestClient, web_settings: Settings,
                                             signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "u@example.org")
    url = signer.unsubscribe_url(sid)
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
    up = signer.feedback_url(sid, PAPER, "up")
    r = client.get(up)
    assert r.status_code == 200 and "Thanks" in r.text and "<title>" in r.text
    assert f"{PUBLIC}/preferences/" in r.text
    assert feedback_rows(web_settings) == [(sid, PAPER, 1)]
    # the query string is for humans: changing it does not change the vote
    client.get(up.replace("v=up", "v=down").replace(f"paper={PAPER}", "paper=9999.99999"))
    assert feedback_rows(web_settings) == [(sid, PAPER, 1)]
    assert client.get(signer.feedback_url(sid, PAPER, "down")).status_code == 200
    assert feedback_rows(web_settings) == [(sid, PAPER, -1)]  # the latest vote wins


def test_feedback_for_unknown_paper(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "f@example.org")
    r = client.get(signer.feedback_url(sid, "2401.99999", "up"))
    assert r.status_code == 404
    assert feedback_rows(web_settings) == []


# -- preferences --------------------------------------------------------------------------------------


def _prefs_form(**over: str) -> dict[str, str]:
    return {"interests": "graph neural networks\n<b>bold</b>", "negative_interests": "survey papers",
            "include_keywords": "", "exclude_keywords": "benchmark\nsurvey", "max_papers": "3",
            "frequency": "weekly", **over}


def test_preferences_saved(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    sid = add_reader(web_settings, "pref@example.org")
    url = signer.preferences_url(sid)
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


@pytest.mark.parametrize("bad", [{"frequency": "hourly"}, {"max_papers": "0"}, {"interests": "x" * 300}])
def test_preferences_invalid_values(client: TestClient, web_settings: Settings, signer: LinkSigner,
                                    bad: dict[str, str]) -> None:
    sid = add_reader(web_settings, "pref@example.org")
    url = signer.preferences_url(sid)
    r = client.post(url, data={**_prefs_form(**bad), "csrf_token": csrf(client.get(url).text)})
    assert r.status_code == 400 and 'class="error"' in r.text
    sub = subscriber_row(web_settings, "pref@example.org")
    assert (sub.interests, sub.max_papers, sub.frequency) == (["robotics"], 10, "daily")


def test_preferences_csrf(client: TestClient, web_settings: Settings, signer: LinkSigner) -> None:
    a = add_reader(web_settings, "a@example.org")
    b = add_reader(web_settings, "b@example.org")
    url_a, url_b = signer.preferences_url(a), signer.preferences_url(b)
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
