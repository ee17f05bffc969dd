"""Link tokens never reach a log (issue 10): the real `digest web` (uvicorn in a subprocess, its own access
log) is asked for every kind of link, and its output is read back."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from digest.config import Settings
from digest.signing import LinkSigner
from digest.store import create_db_engine, upgrade
from digest.web.logs import RedactTokens, redact

from .builders import SECRET, add_reader, digest_web, link_key
from .smtp_server import SmtpTestServer


@pytest.mark.slow
def test_the_served_logs_hold_no_token(settings: Settings, smtp: SmtpTestServer, tmp_path: Path) -> None:
    upgrade(create_db_engine(settings.database_url))
    sid = add_reader(settings, "log@example.org")
    with digest_web(tmp_path, smtp.port, settings.database_url) as web:
        signer = LinkSigner(SECRET, web.base)
        key = link_key(settings, sid)
        urls = [signer.confirm_url(sid, key=key), signer.preferences_url(sid, key=key),
                signer.feedback_url(sid, "2506.01234", "up", key=key), signer.unsubscribe_url(sid, key=key)]
        tokens = [u.rsplit("/", 1)[1].split("?")[0] for u in urls] + ["bm90LWEtcmVhbC10b2tlbi1hdC1hbGw"]
        with httpx.Client() as http:
            for url in urls:
                assert http.get(url).status_code in (200, 404)
            http.post(urls[0], data={"csrf_token": "forged"})
            http.post(urls[-1], content=b"List-Unsubscribe=One-Click",
                      headers={"content-type": "application/x-www-form-urlencoded"})
            http.get(f"{web.base}/confirm/{tokens[-1]}")  # a broken token is kept out too
        logs = web.logs()
    assert "GET /confirm/<token> HTTP/1.1" in logs and "POST /unsubscribe/<token> HTTP/1.1" in logs, logs
    assert "/feedback/<token>?paper=2506.01234&v=up" in logs
    leaked = [t for t in tokens if t in logs]
    assert leaked == [], logs


def test_redact() -> None:
    assert redact("GET /confirm/abc_-123 HTTP/1.1") == "GET /confirm/<token> HTTP/1.1"
    assert redact("/feedback/abc?paper=1&v=up") == "/feedback/<token>?paper=1&v=up"
    assert redact("https://d.example/unsubscribe/xyz, /preferences/a.b") == (
        "https://d.example/unsubscribe/<token>, /preferences/<token>")
    assert redact("GET /healthz") == "GET /healthz"


def test_the_filter_redacts_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/preferences/SECRETTOKEN", "1.1", 200), None)
    assert RedactTokens().filter(record)
    assert "SECRETTOKEN" not in record.getMessage() and "/preferences/<token>" in record.getMessage()
    try:
        raise ValueError("bad link /confirm/SECRETTOKEN")
    except ValueError:
        import sys

        record = logging.LogRecord("digest.web", logging.ERROR, __file__, 1, "failed on %(path)s",
                                   None, sys.exc_info())
        record.args = {"path": "/unsubscribe/SECRETTOKEN"}
    RedactTokens().filter(record)
    text = logging.Formatter().format(record)
    assert "SECRETTOKEN" not in text and "/unsubscribe/<token>" in text and "/confirm/<token>" in text
