"""End to end in headless Chromium (Debian's /usr/bin/chromium through Playwright): the subscribe page
served by uvicorn on 127.0.0.1, the confirmation mail received by a real SMTP server, the confirm link
followed in the browser, preferences saved, then an RFC 8058 one-click unsubscribe POST."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest.config import Settings
from digest.signing import LinkSigner
from digest.store import create_db_engine, session_factory
from digest.store.tables import SubscriberRow
from digest.web import create_app
from tests.smtp_server import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _subscriber(settings: Settings, email: str) -> SubscriberRow:
    with session_factory(create_db_engine(settings.database_url))() as session:
        row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
        assert row is not None
        return row


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Settings, object]]:
    import uvicorn

    controller, recorder = start_server()
    port = free_port()
    s = settings.model_copy(update={
        "secret_key": SecretStr("browser-test-secret-key"), "public_url": f"http://127.0.0.1:{port}",
        "smtp_host": "127.0.0.1", "smtp_port": controller.port, "smtp_security": "none", "smtp_timeout": 5.0,
        "mail_from": "Papers Digest <digest@example.org>",
    })
    server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield s, recorder
    finally:
        server.should_exit = True
        thread.join(10)
        controller.stop()


def test_subscribe_confirm_preferences_unsubscribe_in_chromium(served: tuple[Settings, object]) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    settings, recorder = served
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
            assert _subscriber(settings, address).status == "pending"

            deadline = time.monotonic() + 15
            while not recorder.messages:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "no confirmation mail"
                time.sleep(0.05)
            msg = recorder.messages[0].parse()  # type: ignore[attr-defined]
            assert msg["To"] == address
            link = re.search(r"(http\S+/confirm/\S+)", msg.get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
            assert link.startswith(base + "/confirm/")

            page.goto(link)
            page.wait_for_selector("text=You're subscribed")
            sub = _subscriber(settings, address)
            assert sub.status == "active" and sub.confirmed_at is not None
            assert sub.interests == ["video diffusion", "LLM reasoning"] and sub.max_papers == 5

            page.click("text=Edit your preferences")  # a real browser POST: Origin and CSRF token checked
            page.fill("#exclude_keywords", "survey")
            page.select_option("#frequency", "weekly")
            page.click("text=Save preferences")
            page.wait_for_selector("text=Your preferences are saved.")
            sub = _subscriber(settings, address)
            assert (sub.exclude_keywords, sub.frequency) == (["survey"], "weekly")

            unsubscribe_url = LinkSigner.from_settings(settings).unsubscribe_url(sub.id)
            page.goto(unsubscribe_url)  # GET shows the button only
            page.wait_for_selector("button:has-text('Unsubscribe')")
            assert _subscriber(settings, address).status == "active"

            # RFC 8058: what a mail client sends, without cookies or any page state
            request = p.request.new_context()
            try:
                r = request.post(unsubscribe_url, data="List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status == 200
            finally:
                request.dispose()
            assert _subscriber(settings, address).status == "unsubscribed"
        finally:
            browser.close()
