"""Chaos on the subscriber pages, tried as an attacker or an operator would (issue 11 High-4 and Medium-8),
against the real `digest web` (uvicorn in a subprocess), a real SQLite file and the SMTP test server.

- ids reused: add a subscriber, keep their preferences and unsubscribe links, remove them, add another;
  and the worst case, a newcomer stored under the very same id (a database whose ids were reused before
  they were made unique). Not one old link may work.
- the sign-up burst: one victim's address signed up 40 times with 40 spoofed X-Forwarded-For addresses,
  without a proxy and behind a trusted one. The victim gets one confirmation mail.

Each scenario prints its figures (run with -s to see them)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from digest.config import Settings
from digest.signing import LinkSigner
from digest.store import create_db_engine, session_factory
from digest.store.subscribers import add_subscriber, remove_subscriber
from digest.store.tables import DeliveryRow, SubscriberRow

from .builders import SECRET, digest_web, stored_id, subscriber_row
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow

TRIES = 20
BURST = 40
VICTIM = "victim@example.org"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def test_links_of_removed_subscribers_never_work_again(settings: Settings, smtp: SmtpTestServer,
                                                       tmp_path: Path) -> None:
    sessions = session_factory(create_db_engine(settings.database_url))
    with digest_web(tmp_path, smtp.port, settings.database_url) as web, httpx.Client(base_url=web.base) as http:
        signer = LinkSigner(SECRET, web.base)
        reused = worked = 0
        for i in range(TRIES):
            with sessions.begin() as s:
                old = add_subscriber(s, f"old{i}@example.org", interests=["robotics"])
            old_id, key = stored_id(old), old.link_key or ""
            links = [signer.preferences_url(old_id, key=key), signer.unsubscribe_url(old_id, key=key)]
            with sessions.begin() as s:
                remove_subscriber(s, f"old{i}@example.org")
                new_id = stored_id(add_subscriber(s, f"new{i}@example.org", interests=["robotics"]))
                reused += new_id == old_id
                # the worst case: someone stored under the removed id itself
                s.add(SubscriberRow(id=old_id, email=f"same{i}@example.org", status="active", interests=["x"],
                                    negative_interests=[], include_keywords=[], exclude_keywords=[], seed_papers=[]))
            answers = [http.get(links[0]), http.post(links[0], data={"interests": "hijacked"}),
                       http.get(links[1]), http.post(links[1], content=b"List-Unsubscribe=One-Click",
                                                     headers={"content-type": "application/x-www-form-urlencoded"})]
            worked += sum(a.status_code != 400 or "does not work" not in a.text for a in answers)
            for email in (f"new{i}@example.org", f"same{i}@example.org"):
                row = subscriber_row(settings, email)
                worked += row.status != "active" or row.interests == ["hijacked"]
    print(f"\nchaos ids reused: tries {TRIES}, ids given out again {reused}, old links tried {4 * TRIES}, "
          f"links that still worked {worked}")
    assert (reused, worked) == (0, 0)


def _burst(web_base: str, forwarded: list[str]) -> dict[int, int]:
    codes: dict[int, int] = {}
    with httpx.Client(base_url=web_base) as http:
        for hop in forwarded:
            token = _csrf(http.get("/").text)
            r = http.post("/subscribe", data={"email": VICTIM, "interests": "x", "max_papers": "5",
                                              "csrf_token": token}, headers={"X-Forwarded-For": hop})
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
    return codes


def _mails_settled(smtp: SmtpTestServer, seconds: float = 3.0) -> int:
    """The victim's mails once nothing more arrives for ``seconds`` (confirmations go out in the background)."""
    deadline = time.monotonic() + 20
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(smtp.by_rcpt().get(VICTIM, []))
        if now != count:
            count, quiet_since = now, time.monotonic()
        elif now and time.monotonic() - quiet_since >= seconds:
            break
        time.sleep(0.1)
    return count


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["direct", "behind-trusted-proxy"])
def test_a_signup_burst_mails_the_victim_once(settings: Settings, smtp: SmtpTestServer, tmp_path: Path,
                                              behind_proxy: bool) -> None:
    env = {"DIGEST_WEB_TRUSTED_PROXIES": "127.0.0.1"} if behind_proxy else {}
    spoofed = [f"203.0.113.{i + 1}" for i in range(BURST)]
    with digest_web(tmp_path, smtp.port, settings.database_url, **env) as web:
        codes = _burst(web.base, spoofed)
        mails = _mails_settled(smtp)
    with session_factory(create_db_engine(settings.database_url))() as s:
        rows = s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.kind == "confirm"))
    print(f"\nchaos sign-up burst ({'behind a trusted proxy' if behind_proxy else 'direct'}): tries {BURST}, "
          f"accepted {codes.get(200, 0)}, rate-limited {codes.get(429, 0)}, confirmation rows {rows}, "
          f"mails received {mails}")
    assert mails == 1 and rows == 1
    if behind_proxy:  # each spoofed hop is what the trusted proxy saw: 40 clients, none limited
        assert codes == {200: BURST}
    else:  # the header is the client's own invention: one client, limited after 5 sign-ups a minute
        assert codes == {200: 5, 429: BURST - 5}
