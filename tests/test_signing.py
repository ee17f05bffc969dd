"""Signed link tokens: round trip, tampering, purpose separation, expiry."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner

from digest.signing import BadToken, LinkSigner, MissingSecretError

from .builders import SECRET, bare_settings


def test_round_trip_with_extra() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("feedback", 42, p="2408.00001", v="up")
    assert s.verify("feedback", tok, max_age=3600) == {"subscriber_id": 42, "p": "2408.00001", "v": "up"}


def test_tampered_token_is_refused() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 1)
    payload, ts, sig = tok.split(".")
    for bad in (f"{payload}.{ts}.{sig[:-2]}xx", f"eyJzIjoyfQ.{ts}.{sig}", tok + "x", "garbage", ""):
        with pytest.raises(BadToken):
            s.verify("unsubscribe", bad, max_age=None)
    with pytest.raises(BadToken):  # another key
        LinkSigner("another-secret").verify("unsubscribe", tok)


def test_wrong_purpose_is_refused() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 1)
    with pytest.raises(BadToken):
        s.verify("confirm", tok)
    with pytest.raises(ValueError):
        s.token("nonsense", 1)


def test_expiry_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    s = LinkSigner(SECRET)
    tok = s.token("confirm", 5)
    assert s.verify("confirm", tok, max_age=60)["subscriber_id"] == 5
    later = int(time.time()) + 3600  # an hour later, without sleeping
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    assert s.verify("confirm", tok, max_age=7200)["subscriber_id"] == 5
    with pytest.raises(BadToken) as e:
        s.verify("confirm", tok, max_age=60)
    assert e.value.expired
    assert s.verify("confirm", tok, max_age=None)["subscriber_id"] == 5


def test_urls_use_public_url_and_verify() -> None:
    s = LinkSigner.from_settings(bare_settings(secret_key=SECRET, public_url="https://d.example/"))
    assert s.unsubscribe_url(3).startswith("https://d.example/unsubscribe/")
    assert s.preferences_url(3).startswith("https://d.example/preferences/")
    assert s.confirm_url(3).startswith("https://d.example/confirm/")
    url = s.feedback_url(3, "2408.00001", "down")
    path, _, query = url.partition("?")
    assert query == "paper=2408.00001&v=down"
    assert s.verify("feedback", path.rsplit("/", 1)[1]) == {"subscriber_id": 3, "p": "2408.00001", "v": "down"}
    with pytest.raises(ValueError):
        s.feedback_url(3, "2408.00001", "sideways")


def test_no_secret_is_an_error_unless_demo_fallback() -> None:
    with pytest.raises(MissingSecretError):
        LinkSigner.from_settings(bare_settings())
    demo = LinkSigner.from_settings(bare_settings(demo_secret_fallback=True))
    assert demo.verify("unsubscribe", demo.token("unsubscribe", 1))["subscriber_id"] == 1
