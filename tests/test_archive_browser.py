"""The web archive end to end in headless Chromium (Debian's /usr/bin/chromium through Playwright): digests
mailed through a real SMTP server, the "View in browser" link of a received mail opened, then the archive,
an older digest, the preferences page's feed buttons (real POSTs) and the public page of a listing day.
Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import feedparser
import pytest
from pydantic import SecretStr

from digest.config import Settings
from digest.mailsink import free_port
from digest.store import session_factory
from digest.store.papers import papers_by_ids
from digest.web import create_app

from .builders import ROOT, SECRET, mail_digests, mailed_link, smtp_settings
from .smtp_server import SmtpTestServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAYS = [date(2025, 6, 5), date(2025, 6, 6)]

pytestmark = pytest.mark.slow


@pytest.fixture
def served(settings: Settings, smtp: SmtpTestServer) -> Iterator[Settings]:
    """The web app served by uvicorn on a free port of 127.0.0.1, mailing through ``smtp``."""
    import uvicorn

    port = free_port()
    s = smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET), public_url=f"http://127.0.0.1:{port}",
                      mail_from="Papers Digest <digest@example.org>", send_retry_initial=0.05,
                      send_retry_max=0.2, send_deadline_seconds=20)
    server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield s
    finally:
        server.should_exit = True
        thread.join(10)


def test_view_in_browser_then_the_archive_and_the_feed_in_chromium(served: Settings, smtp: SmtpTestServer) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    base = served.public_url
    mailed = mail_digests(served, DAYS)
    with session_factory(mailed.engine)() as s:
        titles = {day: [papers_by_ids(s, [a])[a].title for a in ids] for day, ids in mailed.papers.items()}
    view = mailed_link(smtp, mailed.email, "d")  # the newest mail's "View in browser"
    assert view.startswith(base + "/d/")
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.goto(view)
            page.wait_for_selector("text=Daily Papers")
            assert page.locator(".paper h2 a").all_inner_texts() == titles[DAYS[1]]
            assert page.is_visible("text=Matches your interest “LLM reasoning”")
            page.screenshot(path=str(shots / "archive-view.png"), full_page=True)

            page.click("text=Past digests")
            page.wait_for_selector("text=Your past digests")
            assert page.locator(".digests a").all_inner_texts() == ["Friday, 6 June 2025", "Thursday, 5 June 2025"]
            page.screenshot(path=str(shots / "archive-list.png"), full_page=True)
            page.click("text=Thursday, 5 June 2025")
            page.wait_for_selector("text=Thursday, 5 June 2025")
            assert page.locator(".paper h2 a").all_inner_texts() == titles[DAYS[0]]

            page.click("text=Manage preferences")
            page.click("text=Turn on the feed")  # a real browser POST: Origin and CSRF token checked
            page.wait_for_selector("text=Your feed is on")
            assert page.url.endswith("/feed#feed")  # the answer opens at the feed section
            first = page.input_value("#feed_url")
            assert re.fullmatch(re.escape(base) + r"/feed/[A-Za-z0-9_-]+\.atom", first)
            page.screenshot(path=str(shots / "archive-feed-on.png"))  # what the browser shows: the feed section
            request = p.request.new_context()
            try:
                r = request.get(first)
                assert r.status == 200 and r.headers["content-type"].startswith("application/atom+xml")
                feed = feedparser.parse(r.body())
                assert not feed.bozo and [e.title for e in feed.entries] == titles[DAYS[1]] + titles[DAYS[0]]
                page.click("text=New feed URL")
                page.wait_for_selector("text=any earlier feed address no longer works")
                second = page.input_value("#feed_url")
                assert second != first
                assert request.get(first).status == 410 and request.get(second).status == 200
                page.click("text=Turn off the feed")
                page.wait_for_selector("text=Your feed is off")
                assert request.get(second).status == 410
            finally:
                request.dispose()

            page.goto(base + "/day/latest")
            page.wait_for_selector("text=Trending papers")
            assert page.url == base + "/day/2025-06-05"
            assert page.locator(".paper").count() == 30
            page.screenshot(path=str(shots / "archive-day.png"))  # the top: the day has 30 papers
        finally:
            browser.close()
