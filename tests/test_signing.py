"""Signed link tokens: round trip, tampering, purpose separation, the per-subscriber key, expiry."""

from __future__ import annotations

import base64
import hmac
import time
from datetime import date

import pytest

from digest.signing import BadToken, LinkSigner, MissingSecretError

from .builders import SECRET, bare_settings

KEY = "k3y-of-this-subscriber"


class Clock:
    """A clock the test moves by hand: expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_764_000_000.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_with_extra() -> None:
    clock = Clock()
    s = LinkSigner(SECRET, clock=clock)
    tok = s.token("feedback", 42, key=KEY, p="2408.00001", v="up")
    assert s.verify("feedback", tok, max_age=3600) == {
        "subscriber_id": 42, "key": KEY, "issued_at": int(clock.now), "p": "2408.00001", "v": "up"}


def test_the_token_is_compact_and_url_safe() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 123456, key="A" * 22)
    assert set(tok) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(tok) < 100, tok


def _flip(tok: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_tampered_token_is_refused() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 1, key=KEY)
    n = len(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    flipped = [_flip(tok, i) for i in (0, 15, 16, 20, n - 1)]  # in the tag, and in the payload
    for bad in (*flipped, tok[:-2], tok + "x", tok + "A", tok + "=", "a" + tok, tok[:5] + "+" + tok[6:],
                "garbage", "", "x" * 5000, "é" + tok):
        with pytest.raises(BadToken):
            s.verify("unsubscribe", bad, max_age=None)
    with pytest.raises(BadToken):  # another secret
        LinkSigner("another-secret").verify("unsubscribe", tok)


def _raw(tok: str) -> bytes:
    return base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))


def test_the_tag_is_one_hmac_sha256_under_a_key_of_the_purpose() -> None:
    clock = Clock()
    tok = LinkSigner(SECRET, clock=clock).token("feedback", 7, key=KEY, p="2408.00001", v="up")
    raw = _raw(tok)
    payload = f"feedback\x1f{int(clock.now)}\x1f7\x1f{KEY}\x1fp\x1f2408.00001\x1fv\x1fup".encode()
    assert raw[16:] == payload
    purpose_key = hmac.digest(SECRET.encode(), b"papers-digest/token/v2/feedback", "sha256")
    assert raw[:16] == hmac.digest(purpose_key, payload, "sha256")[:16]


def test_a_payload_changed_and_re_encoded_is_refused() -> None:
    """The payload is readable: changing the subscriber id in it (and keeping the tag) must fail."""
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 1, key=KEY)
    raw = _raw(tok)
    forged = raw[:16] + raw[16:].replace(b"\x1f1\x1f", b"\x1f2\x1f")
    assert forged != raw
    with pytest.raises(BadToken):
        s.verify("unsubscribe", base64.urlsafe_b64encode(forged).rstrip(b"=").decode())


def test_wrong_purpose_is_refused() -> None:
    s = LinkSigner(SECRET)
    tok = s.token("unsubscribe", 1, key=KEY)
    for other in ("confirm", "preferences", "feedback"):
        with pytest.raises(BadToken):
            s.verify(other, tok)
    with pytest.raises(ValueError):
        s.token("nonsense", 1, key=KEY)


def test_the_key_is_required_and_reserved_names_are_refused() -> None:
    s = LinkSigner(SECRET)
    with pytest.raises(TypeError):
        s.token("unsubscribe", 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        s.token("unsubscribe", 1, key="")
    with pytest.raises(TypeError):
        s.token("unsubscribe", True, key=KEY)
    for name in ("issued_at", "key"):
        with pytest.raises((TypeError, ValueError)):
            s.token("feedback", 1, key=KEY, **{name: "2"})
    for bad in ({"p": 3}, {"p": "a\x1fb"}):  # extras are strings, and never hold the separator
        with pytest.raises(ValueError):
            s.token("feedback", 1, key=KEY, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.token("feedback", 1, key="k\x1fey")


def test_expiry_is_honoured() -> None:
    clock = Clock()
    s = LinkSigner(SECRET, clock=clock)
    tok = s.token("confirm", 5, key=KEY)
    assert s.verify("confirm", tok, max_age=60)["subscriber_id"] == 5
    clock.now += 3600  # an hour later, without sleeping
    assert s.verify("confirm", tok, max_age=7200)["subscriber_id"] == 5
    with pytest.raises(BadToken) as e:
        s.verify("confirm", tok, max_age=60)
    assert e.value.expired
    assert s.verify("confirm", tok, max_age=None)["subscriber_id"] == 5


def test_issued_at_is_the_signing_time() -> None:
    s = LinkSigner(SECRET)
    before = int(time.time())
    issued = s.verify("confirm", s.token("confirm", 5, key=KEY))["issued_at"]
    assert before <= issued <= int(time.time())


def test_urls_use_public_url_and_verify() -> None:
    s = LinkSigner.from_settings(bare_settings(secret_key=SECRET, public_url="https://d.example/"))
    assert s.unsubscribe_url(3, key=KEY).startswith("https://d.example/unsubscribe/")
    assert s.preferences_url(3, key=KEY).startswith("https://d.example/preferences/")
    assert s.confirm_url(3, key=KEY).startswith("https://d.example/confirm/")
    url = s.feedback_url(3, "2408.00001", "down", key=KEY)
    path, _, query = url.partition("?")
    assert query == "paper=2408.00001&v=down"
    data = s.verify("feedback", path.rsplit("/", 1)[1])
    assert (data["subscriber_id"], data["key"], data["p"], data["v"]) == (3, KEY, "2408.00001", "down")
    with pytest.raises(ValueError):
        s.feedback_url(3, "2408.00001", "sideways", key=KEY)


def test_no_secret_is_an_error_unless_demo_fallback() -> None:
    with pytest.raises(MissingSecretError):
        LinkSigner.from_settings(bare_settings())
    demo = LinkSigner.from_settings(bare_settings(demo_secret_fallback=True))
    assert demo.verify("unsubscribe", demo.token("unsubscribe", 1, key=KEY))["subscriber_id"] == 1


def test_the_links_of_a_digest_are_the_links_signed_one_by_one() -> None:
    """``digest_links`` signs a mail's links together (the subscriber's part hashed once): the very URLs the
    ``*_url`` methods give in the same second, each verifying, expiring and bound to its paper and vote."""
    clock = Clock()
    s = LinkSigner(SECRET, "https://d.example", clock=clock)
    ids = ["2408.00001", "2408.00002", "hep-th/9901001"]
    links = s.digest_links(7, date(2025, 6, 5), ids, key=KEY)
    assert links.unsubscribe == s.unsubscribe_url(7, key=KEY)
    assert links.preferences == s.preferences_url(7, key=KEY)
    assert links.view == s.view_url(7, date(2025, 6, 5), key=KEY)
    assert links.archive == s.archive_url(7, key=KEY)
    assert links.feedback == [(s.feedback_url(7, a, "up", key=KEY), s.feedback_url(7, a, "down", key=KEY))
                              for a in ids]
    token = links.feedback[2][1].split("/feedback/")[1].partition("?")[0]
    data = s.verify("feedback", token, max_age=60)
    assert (data["subscriber_id"], data["key"], data["p"], data["v"]) == (7, KEY, "hep-th/9901001", "down")
    assert s.digest_links(7, date(2025, 6, 5), [], key=KEY).feedback == []
    clock.now += 61
    with pytest.raises(BadToken) as e:
        s.verify("feedback", token, max_age=60)
    assert e.value.expired
    with pytest.raises(ValueError):  # a paper id holding the separator would shift the signed fields
        s.digest_links(7, date(2025, 6, 5), ["2408.0\x1f0001"], key=KEY)
    with pytest.raises(TypeError):
        s.digest_links(7, date(2025, 6, 5), ids, key="")
    other = LinkSigner("another secret", "https://d.example", clock=clock)
    with pytest.raises(BadToken):
        other.verify("feedback", token)


def test_the_mac_is_hmac_sha256_for_any_key_and_prefix() -> None:
    """signing._Hmac (SHA-256 states after the padded key) gives hmac.digest's bytes, also for keys longer
    than a block and with a prefix fed in ahead."""
    from digest.signing import _Hmac

    for n in (0, 1, 32, 63, 64, 65, 130):
        key = bytes(range(n))
        for msg in (b"", b"x", b"feedback\x1f1\x1f" * 20):
            want = hmac.digest(key, msg, "sha256")[:16]
            assert _Hmac.of(key).tag(msg) == want
            assert _Hmac.of(key).after(msg[:5]).tag(msg[5:]) == want
