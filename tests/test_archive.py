"""The web archive (issue 15): every digest mail links to a signed page of that digest ("View in browser") and
to the subscriber's archive of past digests; the pages over HTTP on a real SQLite (and PostgreSQL) store."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date
from html import escape, unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select

from digest.config import Settings
from digest.models import Pick
from digest.render import render_digest
from digest.signing import LinkSigner
from digest.store import outbox, session_factory
from digest.store.papers import papers_by_ids
from digest.store.subscribers import remove_subscriber
from digest.store.tables import DeliveryRow, FeedbackRow, SubscriberRow
from digest.web import create_app
from digest.web.logs import redact

from .builders import (
    DAY, LINK_KEY, SECRET, add_reader, link_key, mail_digests, mailed_link, make_context, paper, smtp_settings,
)
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.all_backends

TOKEN_URL = r"https://digest\.example/{}/[A-Za-z0-9_-]+"


# -- the mail ------------------------------------------------------------------------------------------


def test_the_mail_links_to_its_page_and_the_archive_in_both_parts() -> None:
    r = render_digest(make_context([paper(0), paper(1)]))
    signer = LinkSigner(SECRET, "https://digest.example")
    for kind, purpose in (("d", "view"), ("archive", "archive")):
        found = re.findall(TOKEN_URL.format(kind), r.text)
        assert len(found) == 1, (kind, r.text)
        assert found[0] in r.html, kind  # the same link in the HTML part
        data = signer.verify(purpose, found[0].rsplit("/", 1)[1])
        assert (data["subscriber_id"], data["key"]) == (7, LINK_KEY)
        if purpose == "view":
            assert data["d"] == DAY.isoformat()  # the page of this digest
    assert "View in browser" in r.html and "View in your browser" in r.text
    # at the top, before the first card (the preheader, hidden, comes first)
    assert r.html.index("View in browser") < r.html.index(">Paper number 0: scaling things up</a>")
    assert r.text.index("View in your browser") < r.text.index("1. Paper number 0")
    assert "Past digests" in r.html and "Past digests" in r.text
    for line in r.text.splitlines():  # one URL per line, as every other link of the text part
        assert line.count("://") <= 1, line


def test_papers_the_size_guard_left_out_are_on_the_page() -> None:
    long = "This abstract is deliberately long to push the email over the size limit. " * 40
    r = render_digest(make_context([paper(i, abstract=long, title=f"A long title for paper {i} " * 3)
                                    for i in range(60)]))
    assert 0 < r.included < 60
    view = re.findall(TOKEN_URL.format("d"), r.text)[0]
    more = r.text.split("did not fit in this email", 1)[1]
    assert "Read them in your browser:\n" + view in more  # the page shows every pick, the mail only some
    assert r.html.count(f'href="{view}"') == 2  # at the top, and on the "did not fit" line


def test_the_new_token_paths_are_kept_out_of_logs() -> None:
    assert redact("GET /d/abc_-1 HTTP/1.1") == "GET /d/<token> HTTP/1.1"
    assert redact("GET /archive/abc?page=2 HTTP/1.1") == "GET /archive/<token>?page=2 HTTP/1.1"
    assert redact("GET /feed/abc-_x.atom HTTP/1.1") == "GET /feed/<token> HTTP/1.1"
    assert redact("POST /preferences/abc/feed HTTP/1.1") == "POST /preferences/<token>/feed HTTP/1.1"
    assert redact("GET /day/2026-08-18.atom HTTP/1.1") == "GET /day/2026-08-18.atom HTTP/1.1"  # public


# -- the pages over HTTP, on a real store, from mails received by a real SMTP server ------------------------

PUBLIC = "http://testserver"
DAYS = [date(2025, 6, 5), date(2025, 6, 6), date(2025, 6, 9)]


@pytest.fixture
def web_settings(settings: Settings, smtp: SmtpTestServer) -> Settings:
    return smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET), public_url=PUBLIC,
                         mail_from="Papers Digest <digest@example.org>", send_retry_initial=0.05,
                         send_retry_max=0.2, send_deadline_seconds=20)


@pytest.fixture
def client(web_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings)) as c:
        yield c


def titles_in(html: str) -> list[str]:
    """The paper titles of a page's cards, in order (as the page shows them, unescaped)."""
    return [unescape(t) for t in re.findall(r'<h2>\d+\. <a href="[^"]+">([^<]*)</a></h2>', html)]


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    """Every subscriber, delivery and feedback row: what a GET must leave as it was."""
    with session_factory(engine)() as s:
        return [*(tuple(getattr(r, c.key) for c in SubscriberRow.__table__.columns) for r in s.scalars(select(SubscriberRow))),
                *(tuple(getattr(r, c.key) for c in DeliveryRow.__table__.columns) for r in s.scalars(select(DeliveryRow))),
                *((r.subscriber_id, r.arxiv_id, r.value) for r in s.scalars(select(FeedbackRow)))]


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC), url
    return url[len(PUBLIC):]


def test_the_view_link_of_a_received_mail_shows_that_digest(client: TestClient, web_settings: Settings,
                                                            smtp: SmtpTestServer) -> None:
    mailed = mail_digests(web_settings, DAYS[:2])
    link = mailed_link(smtp, mailed.email, "d", index=0)  # the first day's mail
    msg = smtp.by_rcpt()[mailed.email][0].parse()
    mail_text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    before = snapshot(mailed.engine)
    r = client.get(path_of(link))
    assert r.status_code == 200, r.text
    assert snapshot(mailed.engine) == before  # a GET changes nothing
    with session_factory(mailed.engine)() as s:
        want = [papers_by_ids(s, [a])[a].title for a in mailed.papers[DAYS[0]]]
    assert titles_in(r.text) == want  # the same papers in the same order as the mail
    mail_titles = re.findall(r"^\d+\. (.+)$", mail_text, re.M)
    assert [t for t in mail_titles] == [w[: len(t)] for w, t in zip(want, mail_titles)]
    for reason in ("Matches your interest “LLM reasoning”", "Matches your interest “robotics”", "Trending today"):
        assert reason in r.text and reason in mail_text  # the same reasons
    assert "Thursday, 5 June 2025" in r.text and "3 papers picked for reader@example.org" in r.text
    assert r.text.count("/feedback/") == 6  # "more / less like this", as in the mail
    assert "/archive/" in r.text and "/preferences/" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "same-origin"
    second = client.get(path_of(mailed_link(smtp, mailed.email, "d", index=1)))
    assert titles_in(second.text)[0] != want[0] and "Friday, 6 June 2025" in second.text


def test_the_archive_lists_sent_digests_newest_first(client: TestClient, web_settings: Settings,
                                                     smtp: SmtpTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    mailed = mail_digests(web_settings, DAYS)
    with session_factory(mailed.engine).begin() as s:  # a digest planned but not sent is not in the archive
        outbox.plan_deliveries(s, date(2025, 6, 10), {mailed.subscriber_id: [Pick(mailed.papers[DAYS[0]][0], 1, 0.5,
                                                                                  "trending")]})
    link = mailed_link(smtp, mailed.email, "archive")
    before = snapshot(mailed.engine)
    r = client.get(path_of(link))
    assert r.status_code == 200, r.text
    assert snapshot(mailed.engine) == before
    shown = re.findall(r'<a href="(/d/[A-Za-z0-9_-]+|http://testserver/d/[A-Za-z0-9_-]+)">([^<]+)</a>', r.text)
    assert [d for _, d in shown] == ["Monday, 9 June 2025", "Friday, 6 June 2025", "Thursday, 5 June 2025"]
    assert "10 June" not in r.text and "3 digests mailed to reader@example.org" in r.text
    with session_factory(mailed.engine)() as s:
        top = papers_by_ids(s, [mailed.papers[DAYS[2]][0]])[mailed.papers[DAYS[2]][0]].title
    assert escape(top) in r.text  # each digest with its top paper
    for (url, _), day in zip(shown, reversed(DAYS)):  # each line opens that digest
        page = client.get(path_of(url) if url.startswith("http") else url)
        assert page.status_code == 200 and f"{day.day} June 2025" in page.text
    # paginated: 2 a page
    monkeypatch.setattr("digest.web.archive.ARCHIVE_PAGE", 2)
    first = client.get(path_of(link))
    assert first.text.count("/d/") == 2 and "page 1 of 2" in first.text and "?page=2" in first.text
    last = client.get(path_of(link) + "?page=2")
    assert last.text.count("/d/") == 1 and "Thursday, 5 June 2025" in last.text and "?page=1" in last.text
    for odd in ("?page=0", "?page=x", "?page=99999999999"):
        assert client.get(path_of(link) + odd).status_code == 200


def test_bad_expired_and_foreign_links_get_the_error_page(client: TestClient, web_settings: Settings,
                                                          smtp: SmtpTestServer) -> None:
    mailed = mail_digests(web_settings, DAYS[:1])
    sid, key = mailed.subscriber_id, link_key(web_settings, mailed.subscriber_id)
    signer = LinkSigner(SECRET, PUBLIC)
    view, archive = mailed_link(smtp, mailed.email, "d"), mailed_link(smtp, mailed.email, "archive")
    assert client.get(path_of(view)).status_code == 200 and client.get(path_of(archive)).status_code == 200
    old = LinkSigner(SECRET, PUBLIC, clock=lambda: time.time() - 91 * 86400)  # preferences links work 90 days
    other = add_reader(web_settings, "other@example.org")
    bad = {
        "tampered": path_of(view)[:-3] + ("AAA" if not view.endswith("AAA") else "BBB"),
        "another purpose": "/d/" + signer.token("preferences", sid, key=key),
        "view token on the archive": "/archive/" + view.rsplit("/", 1)[1],
        "archive token as a view": "/d/" + archive.rsplit("/", 1)[1],
        "expired view": path_of(old.view_url(sid, DAYS[0], key=key)),
        "expired archive": path_of(old.archive_url(sid, key=key)),
        "someone else's key": path_of(signer.view_url(other, DAYS[0], key=key)),
        "no date": "/d/" + signer.token("view", sid, key=key),
        "not a date": "/d/" + signer.token("view", sid, key=key, d="2025-6-5"),
        "garbage": "/d/not-a-token", "empty archive": "/archive/x",
    }
    before = snapshot(mailed.engine)
    for what, path in bad.items():
        r = client.get(path)
        assert r.status_code == 400, what
        assert "This link does not work" in r.text, what
        assert "reader@example.org" not in r.text and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "has expired" in client.get(bad["expired view"]).text
    assert snapshot(mailed.engine) == before
    # a day without a digest: nothing to show
    r = client.get(path_of(signer.view_url(sid, date(2025, 6, 20), key=key)))
    assert r.status_code == 404 and "Digest not found" in r.text
    # the links die with the subscriber
    with session_factory(mailed.engine).begin() as s:
        remove_subscriber(s, mailed.email)
    for url in (view, archive):
        assert client.get(path_of(url)).status_code == 400
