"""End to end in headless Chromium (Debian's /usr/bin/chromium through Playwright): the subscribe page
served by uvicorn on 127.0.0.1, the confirmation mail received by a real SMTP server, the confirm link
followed in the browser and its button pressed, preferences saved, then an RFC 8058 one-click unsubscribe
POST."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from digest.config import Settings
from digest.mailsink import free_port
from digest.signing import LinkSigner
from digest.web import create_app

from .builders import ROOT, SECRET, confirm_link, smtp_settings, subscriber_row
from .smtp_server import SmtpTestServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


@pytest.fixture
def served(settings: Settings, smtp: SmtpTestServer) -> Iterator[Settings]:
    """The web app served by uvicorn on a free port of 127.0.0.1, mailing through ``smtp``."""
    import uvicorn

    port = free_port()
    s = smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET), public_url=f"http://127.0.0.1:{port}",
                      mail_from="Papers Digest <digest@example.org>")
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


def test_subscribe_confirm_preferences_unsubscribe_in_chromium(served: Settings, smtp: SmtpTestServer) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    settings = served
    base = settings.public_url
    address = "grace@example.org"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 820})
            page.goto(base + "/")
            assert page.title() == "Subscribe - Papers Digest"
            page.fill("#email", address)
            page.fill("#interests", "video diffusion\nLLM reasoning")
            page.fill("#max_papers", "5")
            shots = ROOT / "test-artifacts"
            shots.mkdir(exist_ok=True)
            page.screenshot(path=str(shots / "subscribe.png"), full_page=True)
            page.click("button[type=submit]")
            page.wait_for_selector("text=Check your inbox")
            assert subscriber_row(settings, address).status == "pending"

            deadline = time.monotonic() + 15
            while not smtp.messages:
                assert time.monotonic() < deadline, "no confirmation mail"
                time.sleep(0.05)
            msg = smtp.messages[0].parse()
            assert msg["To"] == address
            link = confirm_link(smtp, address)
            assert link.startswith(base + "/confirm/")

            page.goto(link)  # what a mail link scanner does too: nothing changes
            page.wait_for_selector("text=Confirm your subscription")
            assert page.is_visible("text=LLM reasoning")  # what confirming starts
            assert subscriber_row(settings, address).status == "pending"
            page.screenshot(path=str(shots / "confirm.png"), full_page=True)
            page.click("text=Confirm my subscription")  # a real browser POST: Origin and CSRF token checked
            page.wait_for_selector("text=You're subscribed")
            sub = subscriber_row(settings, address)
            assert sub.status == "active" and sub.confirmed_at is not None
            assert sub.interests == ["video diffusion", "LLM reasoning"] and sub.max_papers == 5

            page.click("text=Edit your preferences")  # a real browser POST: Origin and CSRF token checked
            page.fill("#exclude_keywords", "survey")
            page.select_option("#frequency", "weekly")
            assert not page.is_checked("#thumbnails") and not page.is_checked("#plain_text")  # the defaults
            page.check("text=Show each paper's thumbnail")  # the label toggles its box
            page.click("text=Save preferences")
            page.wait_for_selector("text=Your preferences are saved.")
            sub = subscriber_row(settings, address)
            assert (sub.exclude_keywords, sub.frequency) == (["survey"], "weekly")
            assert (sub.thumbnails, sub.plain_text) == (True, False)
            assert page.is_checked("#thumbnails")
            page.screenshot(path=str(shots / "preferences.png"), full_page=True)
            page.uncheck("#thumbnails")
            page.check("#plain_text")
            page.click("text=Save preferences")
            page.wait_for_selector("text=Your preferences are saved.")
            sub = subscriber_row(settings, address)
            assert (sub.thumbnails, sub.plain_text) == (False, True)

            unsubscribe_url = LinkSigner.from_settings(settings).unsubscribe_url(sub.id, key=sub.link_key)
            page.goto(unsubscribe_url)  # GET shows the button only
            page.wait_for_selector("button:has-text('Unsubscribe')")
            assert subscriber_row(settings, address).status == "active"

            # RFC 8058: what a mail client sends, without cookies or any page state
            request = p.request.new_context()
            try:
                r = request.post(unsubscribe_url, data="List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status == 200
            finally:
                request.dispose()
            assert subscriber_row(settings, address).status == "unsubscribed"
        finally:
            browser.close()
