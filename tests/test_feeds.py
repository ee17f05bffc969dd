"""The Atom feeds (issue 15), parsed back with feedparser as a feed reader does: a subscriber's picks at a
signed URL that the preferences page turns on, replaces and turns off; and the public page and feed of each
listing day. Over HTTP (TestClient) on a real store (SQLite and PostgreSQL), with digests mailed through a
real SMTP server."""

from __future__ import annotations

import calendar
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, datetime, timezone
from html import unescape

import feedparser
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from digest import pipeline
from digest.config import Settings
from digest.signing import LinkSigner
from digest.sources.huggingface import load_listing_file
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.papers import list_papers, papers_by_ids
from digest.store.subscribers import drop_feed_key, find_subscriber, remove_subscriber, renew_feed_key
from digest.web import create_app

from .builders import (
    API_2025_06_05, HF_FIXTURES, SECRET, add_reader, link_key, mail_digests, smtp_settings, subscriber_row,
)
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.all_backends
PUBLIC = "http://testserver"
ATOM = "{http://www.w3.org/2005/Atom}"
DAYS = [date(2025, 6, 5), date(2025, 6, 6), date(2025, 6, 9)]
LATER = HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json"  # 2 papers listed on 2025-06-20


@pytest.fixture
def web_settings(settings: Settings, smtp: SmtpTestServer) -> Settings:
    return smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET), public_url=PUBLIC,
                         mail_from="Papers Digest <digest@example.org>", send_retry_initial=0.05,
                         send_retry_max=0.2, send_deadline_seconds=20)


@pytest.fixture
def client(web_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings)) as c:
        yield c


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def parsed_time(struct: object) -> datetime:
    return datetime.fromtimestamp(calendar.timegm(struct), timezone.utc)  # type: ignore[arg-type]


def parse_atom(body: bytes) -> feedparser.FeedParserDict:
    """The feed as a reader sees it; refused unless it is well-formed Atom 1.0 with the required elements."""
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    root = ET.fromstring(body)  # the raw elements too: RFC 4287's one alternate link per entry
    assert root.tag == f"{ATOM}feed"
    for el in (root, *root.iter(f"{ATOM}entry")):
        for required in ("id", "title", "updated"):
            assert el.find(f"{ATOM}{required}") is not None, required
    for entry in root.iter(f"{ATOM}entry"):
        links = entry.findall(f"{ATOM}link")
        assert len([ln for ln in links if ln.get("rel", "alternate") == "alternate"]) == 1
    return feed


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FEED_URL = re.compile(r'id="feed_url" type="text" readonly value="([^"]+)"')


def prefs_path(settings: Settings, sid: int) -> str:
    return LinkSigner(SECRET, PUBLIC).preferences_url(sid, key=link_key(settings, sid))[len(PUBLIC):]


def press(client: TestClient, prefs: str, button: str, **headers: str) -> tuple[int, str]:
    """Open the preferences page and press a feed button (a POST with the page's CSRF token): the status and
    the page it answers."""
    page = client.get(prefs)
    m = CSRF.search(page.text)
    assert m, page.text
    r = client.post(prefs + "/feed", data={"csrf_token": m.group(1), "feed": button}, headers=headers or None)
    return r.status_code, r.text


def feed_path(page: str) -> str | None:
    m = FEED_URL.search(page)
    return unescape(m.group(1))[len(PUBLIC):] if m else None


# -- the schema ---------------------------------------------------------------------------------------


def test_migration_0009_gives_nobody_a_feed(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO subscribers (email, status, interests, negative_interests, include_keywords, "
            "exclude_keywords, seed_papers, max_papers, frequency, timezone, created_at, link_key, "
            "status_changed_at) VALUES ('old@example.org', 'active', '[]', '[]', '[]', '[]', '[]', 10, 'daily', "
            "'UTC', '2026-08-18 00:00:00', 'k', '2026-08-18 00:00:00')"))
    upgrade(engine)
    with session_factory(engine).begin() as s:
        sub = find_subscriber(s, email="old@example.org")
        assert sub is not None and sub.id is not None and sub.feed_key is None
        first = renew_feed_key(s, sub.id).feed_key
        second = renew_feed_key(s, sub.id).feed_key
        assert first and second and first != second and len(second) >= 22  # 128 random bits, URL-safe
        assert drop_feed_key(s, sub.id).feed_key is None


# -- a subscriber's picks ---------------------------------------------------------------------------------


def test_the_picks_feed_parses_back(client: TestClient, web_settings: Settings) -> None:
    mailed = mail_digests(web_settings, DAYS)
    prefs = prefs_path(web_settings, mailed.subscriber_id)
    status, page = press(client, prefs, "renew")
    assert status == 200 and "Your feed is on" in page
    path = feed_path(page)
    assert path and path.startswith("/feed/") and path.endswith(".atom")
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = parse_atom(r.content)
    assert feed.feed.title == "Papers Digest: your picks"
    assert [ln.href for ln in feed.feed.links if ln.rel == "self"] == [PUBLIC + path]
    entries = feed.entries
    # one entry per picked paper: newest digest first, in the mail's rank order within a digest
    want = [(day, a) for day in reversed(DAYS) for a in mailed.papers[day]]
    assert len(entries) == len(want) == 9
    with session_factory(mailed.engine)() as s:
        papers = papers_by_ids(s, [a for _, a in want])
    for entry, (day, arxiv_id) in zip(entries, want):
        assert entry.title == papers[arxiv_id].title
        assert entry.link == f"https://huggingface.co/papers/{arxiv_id}"
        assert parsed_time(entry.updated_parsed) == midnight(day)  # updated = the digest date
        assert entry.id.startswith("tag:testserver,") and entry.id.endswith(f"/{arxiv_id}")
    reasons = [e.summary.split(".", 1)[0] for e in entries[:3]]
    assert reasons == ["Matches your interest “LLM reasoning”", "Matches your interest “robotics”", "Trending today"]
    assert parsed_time(feed.feed.updated_parsed) == midnight(DAYS[-1])
    assert len({e.id for e in entries}) == 9
    again = parse_atom(client.get(path).content)  # ids are stable across fetches
    assert [e.id for e in again.entries] == [e.id for e in entries]
    # the same URL every time the page shows it
    assert feed_path(client.get(prefs).text) == path


def test_the_feed_url_is_replaced_and_turned_off_from_the_preferences_page(
        client: TestClient, web_settings: Settings) -> None:
    mailed = mail_digests(web_settings, DAYS[:1])
    sid = mailed.subscriber_id
    prefs = prefs_path(web_settings, sid)
    page = client.get(prefs).text
    assert "Turn on the feed" in page and feed_path(page) is None
    assert subscriber_row(web_settings, mailed.email).feed_key is None  # nobody has a feed until asked

    _, page = press(client, prefs, "renew")
    first = feed_path(page)
    assert first and client.get(first).status_code == 200
    assert "New feed URL" in page and "Turn off the feed" in page

    status, page = press(client, prefs, "renew")  # a new URL: the old one stops at once
    second = feed_path(page)
    assert status == 200 and second and second != first
    old = client.get(first)
    assert old.status_code == 410 and "This feed no longer works" in old.text
    assert client.get(second).status_code == 200

    status, page = press(client, prefs, "off")
    assert status == 200 and "Your feed is off" in page and feed_path(page) is None and "Turn on the feed" in page
    assert client.get(second).status_code == 410 and client.get(first).status_code == 410
    assert subscriber_row(web_settings, mailed.email).feed_key is None

    # the buttons are forms: a forged or cross-site POST changes nothing
    _, page = press(client, prefs, "renew")
    key = subscriber_row(web_settings, mailed.email).feed_key
    assert key
    forged = client.post(prefs + "/feed", data={"csrf_token": "forged", "feed": "off"})
    assert forged.status_code == 403
    status, _ = press(client, prefs, "off", origin="https://evil.example")
    assert status == 403
    assert client.post(prefs + "/feed", data={"feed": "off"}).status_code == 403
    assert press(client, prefs, "sideways")[0] == 400
    assert subscriber_row(web_settings, mailed.email).feed_key == key
    assert client.get(feed_path(page) or "").status_code == 200


def test_bad_feed_links_get_the_error_page(client: TestClient, web_settings: Settings) -> None:
    mailed = mail_digests(web_settings, DAYS[:1])
    sid, key = mailed.subscriber_id, link_key(web_settings, mailed.subscriber_id)
    _, page = press(client, prefs_path(web_settings, sid), "renew")
    good = feed_path(page)
    assert good and client.get(good).status_code == 200
    signer = LinkSigner(SECRET, PUBLIC)
    feed_key = subscriber_row(web_settings, mailed.email).feed_key
    assert feed_key
    other = add_reader(web_settings, "other@example.org")
    token = good[len("/feed/"):-len(".atom")]
    for what, path in {
        "tampered": f"/feed/{token[:-3]}{'AAA' if not token.endswith('AAA') else 'BBB'}.atom",
        "a view token": "/feed/" + signer.token("view", sid, key=key, d="2025-06-05") + ".atom",
        "no feed key": "/feed/" + signer.token("feed", sid, key=key) + ".atom",
        "someone else's": signer.feed_url(other, key=key, feed_key=feed_key)[len(PUBLIC):],
        "garbage": "/feed/garbage.atom",
    }.items():
        r = client.get(path)
        assert r.status_code in (400, 410), what
        assert "<feed" not in r.text and "reader@example.org" not in r.text, what
    assert client.get("/feed/" + signer.token("feed", sid, key=key, f="guessed") + ".atom").status_code == 410
    with session_factory(mailed.engine).begin() as s:  # the feed dies with the subscriber
        remove_subscriber(s, mailed.email)
    assert client.get(good).status_code == 400


# -- the public pages of each listing day ------------------------------------------------------------------


def store_days(settings: Settings) -> Engine:
    engine = pipeline.open_store(settings)
    pipeline.store(engine, load_listing_file(API_2025_06_05))
    pipeline.store(engine, load_listing_file(LATER))
    return engine


def test_the_page_of_a_day_shows_its_listing_most_upvoted_first(client: TestClient, web_settings: Settings) -> None:
    engine = store_days(web_settings)
    add_reader(web_settings, "private@example.org", interests=["secret interest"])
    with session_factory(engine)() as s:
        papers = list_papers(s, DAYS[0])
    assert len(papers) == 30
    r = client.get("/day/2025-06-05")
    assert r.status_code == 200
    titles = [unescape(t) for t in re.findall(r'<h2>\d+\. <a href="[^"]+">([^<]*)</a></h2>', r.text)]
    by_votes = sorted(papers, key=lambda p: (-p.upvotes, p.arxiv_id))
    assert titles == [p.title for p in by_votes]
    assert "Thursday, 5 June 2025" in r.text and "30 papers" in r.text
    assert f"&#9650; {by_votes[0].upvotes} upvotes" in r.text
    assert 'href="/day/2025-06-20"' in r.text  # the next stored day
    assert 'rel="alternate" type="application/atom+xml"' in r.text and 'href="/day/2025-06-05.atom"' in r.text
    # what the listing shows, nothing of any subscriber, no signed link
    assert "private@example.org" not in r.text and "secret interest" not in r.text
    for private in ("/feedback/", "/preferences/", "/unsubscribe/", "/d/", "/archive/", "/feed/"):
        assert private not in r.text
    assert r.headers["cache-control"] == "public, max-age=300"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]

    latest = client.get("/day/latest", follow_redirects=False)
    assert latest.status_code == 302 and latest.headers["location"] == "/day/2025-06-20"
    later = client.get("/day/latest")
    assert later.status_code == 200 and "2 papers" in later.text and 'href="/day/2025-06-05"' in later.text

    for missing in ("/day/2025-06-07", "/day/2025-06-07.atom", "/day/2025-13-01", "/day/20250605",
                    "/day/garbage", "/day/garbage.atom", "/day/2025-06-05x"):
        r = client.get(missing)
        assert r.status_code == 404, missing
        assert "No papers for that day" in r.text


def test_an_empty_store_has_no_latest_day(client: TestClient) -> None:
    for path in ("/day/latest", "/day/latest.atom"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 404 and "No papers for that day" in r.text


def test_the_feed_of_a_day_parses_back(client: TestClient, web_settings: Settings) -> None:
    engine = store_days(web_settings)
    with session_factory(engine)() as s:
        papers = sorted(list_papers(s, DAYS[0]), key=lambda p: (-p.upvotes, p.arxiv_id))
    r = client.get("/day/2025-06-05.atom")
    assert r.status_code == 200 and r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300"
    feed = parse_atom(r.content)
    assert feed.feed.title == "Trending papers of 2025-06-05"
    assert [ln.href for ln in feed.feed.links if ln.rel == "self"] == [PUBLIC + "/day/2025-06-05.atom"]
    assert [ln.href for ln in feed.feed.links if ln.rel == "alternate"] == [PUBLIC + "/day/2025-06-05"]
    assert [e.title for e in feed.entries] == [p.title for p in papers]
    for entry, p in zip(feed.entries, papers):
        assert entry.link == f"https://huggingface.co/papers/{p.arxiv_id}"
        assert entry.id == f"tag:testserver,2025-06-05:day/{p.arxiv_id}"
        assert parsed_time(entry.updated_parsed) == midnight(DAYS[0])
        assert entry.summary.startswith(f"{p.upvotes} upvote")
    assert parsed_time(feed.feed.updated_parsed) == midnight(DAYS[0])
    # the latest day's feed: one address to keep, the same entry ids as that day's own feed
    latest = parse_atom(client.get("/day/latest.atom").content)
    own = parse_atom(client.get("/day/2025-06-20.atom").content)
    assert [e.id for e in latest.entries] == [e.id for e in own.entries] and len(latest.entries) == 2
    assert [ln.href for ln in latest.feed.links if ln.rel == "self"] == [PUBLIC + "/day/latest.atom"]
    assert latest.feed.id != own.feed.id
