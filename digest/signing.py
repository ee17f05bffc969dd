"""Signed, URL-safe tokens for the links in an email (unsubscribe, preferences, feedback, confirm) and for
the web forms (CSRF).

A token is ``base64url(tag || payload)``. The payload is the purpose, the issued-at time (epoch seconds)
and the fields, joined by the unit separator (U+001F); for a link the fields are the subscriber id, the
subscriber's link key and the extras (``p``aper id and ``v``ote of a feedback link). The tag is the first
16 bytes (128 bits) of one HMAC-SHA256 over the payload, under a key derived from the secret for that
purpose alone, compared in constant time. So a token costs one HMAC to make and one to check, an
unsubscribe token can never be replayed as a feedback or confirmation token, and nobody without the
secret can make one. Expiry is decided by the verifier (``max_age``) from the signed issued-at.

The *link key* is a random value stored on the subscriber (``subscribers.link_key``): the web pages accept
a token only when its key is the stored one, so the links of a removed subscriber never act on whoever
gets their id later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from digest.config import Settings

log = logging.getLogger(__name__)

# view: the web page of one digest (``d``: its date); archive: the list of a subscriber's digests; feed: the
# Atom feed of their picks (``f``: the subscriber's feed key, which the preferences page rotates or clears).
PURPOSES = frozenset({"unsubscribe", "preferences", "feedback", "confirm", "view", "archive", "feed"})
CONFIRM_MAX_AGE = 7 * 24 * 3600  # a confirmation link works for 7 days
VOTES = frozenset({"up", "down"})
# Public and therefore worthless as a secret: only used with ``demo_secret_fallback=True``.
DEMO_SECRET = "papers-digest-demo-secret-NOT-FOR-PRODUCTION"

TAG_BYTES = 16  # 128 bits of HMAC-SHA256
MAX_TOKEN_CHARS = 1024  # anything longer is refused before it is decoded
SEP = "\x1f"  # between the payload's fields; never inside one
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_RESERVED = frozenset({"subscriber_id", "key", "issued_at"})


class BadToken(ValueError):
    """A token that is malformed, tampered with, for another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class MissingSecretError(ValueError):
    """``secret_key`` is not configured (and the demo fallback is not enabled)."""


@lru_cache(maxsize=4096)
def _query_value(value: str) -> str:
    """``value`` quoted for a query string, as ``urlencode(..., quote_via=quote)`` does (a day's papers
    come back in mail after mail: cached)."""
    return quote(value, safe="")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> str:
    # urlsafe_b64encode without its two Python wrappers (a mail signs two dozen tokens)
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:  # one spelling per token: no spare padding bits, no ignored characters
        raise binascii.Error("not canonical base64url")
    return raw


_BLOCK = 64  # SHA-256's block size: HMAC pads its key to it (RFC 2104)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@dataclass(frozen=True, slots=True)
class _Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, kept as the SHA-256 states after the padded key's inner and
    outer blocks: a tag is two ``copy()`` of those states and two short updates, in C, without the
    ``hmac`` module's Python wrappers (OpenSSL 3 also looks the algorithm up again in ``hmac.digest``).
    The same bytes as ``hmac.digest(key, msg, "sha256")`` (tests/test_signing.py checks it)."""

    inner: hashlib._Hash
    outer: hashlib._Hash

    @classmethod
    def of(cls, key: bytes) -> _Hmac:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        return cls(hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD)))

    def after(self, prefix: bytes) -> _Hmac:
        """The same MAC with ``prefix`` already fed in: ``after(p).tag(m) == tag(p + m)``."""
        inner = self.inner.copy()
        inner.update(prefix)
        return _Hmac(inner, self.outer)

    def tag(self, message: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


class TokenSigner:
    """The primitive: ``sign(purpose, fields)`` and ``unsign(purpose, token, max_age)`` of a list of
    strings, one HMAC-SHA256 each, with one key per purpose derived from ``secret`` (purposes never mix)."""

    def __init__(self, secret: str, purposes: frozenset[str], clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise MissingSecretError("an empty secret cannot sign links")
        master = secret.encode()
        self._macs = {
            p: _Hmac.of(hmac.digest(master, f"papers-digest/token/v2/{p}".encode(), "sha256")) for p in purposes
        }
        self.clock = clock

    def _tag(self, purpose: str, payload: bytes) -> bytes:
        return self._macs[purpose].tag(payload)

    def _check(self, purpose: str) -> None:
        if purpose not in self._macs:
            raise ValueError(f"unknown token purpose {purpose!r} (one of {sorted(self._macs)})")

    def sign(self, purpose: str, fields: Sequence[str], issued_at: int | None = None) -> str:
        """A token for ``purpose`` over ``purpose, issued-at, *fields`` (strings without U+001F); issued now
        unless ``issued_at`` (epoch seconds) is given."""
        self._check(purpose)
        for f in fields:
            if not isinstance(f, str) or SEP in f:
                raise ValueError(f"token fields are strings without U+001F, not {f!r}")
        issued = int(self.clock()) if issued_at is None else int(issued_at)
        payload = SEP.join((purpose, str(issued), *fields)).encode()
        return _b64(self._tag(purpose, payload) + payload)

    def sign_many(self, purpose: str, head: Sequence[str], tails: Sequence[Sequence[str]],
                  issued_at: int | None = None) -> list[str]:
        """``[sign(purpose, [*head, *tail], issued) for tail in tails]``, the same tokens byte for byte, at
        a fraction of the cost: the shared ``purpose, issued-at, *head`` is checked, encoded and hashed
        once (the HMAC state after it is copied for each tail). Every tail holds at least one field."""
        self._check(purpose)
        for f in (*head, *(f for tail in tails for f in tail)):
            if not isinstance(f, str) or SEP in f:
                raise ValueError(f"token fields are strings without U+001F, not {f!r}")
        if any(not tail for tail in tails):
            raise ValueError("every tail of sign_many holds at least one field")
        issued = int(self.clock()) if issued_at is None else int(issued_at)
        prefix = (SEP.join((purpose, str(issued), *head)) + SEP).encode()
        tag = self._macs[purpose].after(prefix).tag
        out = []
        for tail in tails:
            rest = SEP.join(tail).encode()
            out.append(_b64(tag(rest) + prefix + rest))
        return out

    def unsign(self, purpose: str, token: str, max_age: float | None = None) -> tuple[int, list[str]]:
        """``(issued_at, fields)`` of a token made by ``sign(purpose, fields)``; ``BadToken`` otherwise
        (``expired=True`` when older than ``max_age`` seconds)."""
        self._check(purpose)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise BadToken(f"invalid {purpose} link")
        try:
            raw = _unb64(token)
        except (binascii.Error, ValueError):
            raise BadToken(f"invalid {purpose} link") from None
        tag, payload = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, self._tag(purpose, payload)):
            raise BadToken(f"invalid {purpose} link")
        # signed with our key from here on: the payload is one we made
        name, issued, *fields = payload.decode().split(SEP)
        if name != purpose or not issued.isdigit():
            raise BadToken(f"invalid {purpose} link")
        issued_at = int(issued)
        if max_age is not None and self.clock() - issued_at > max_age:
            raise BadToken(f"{purpose} link expired", expired=True)
        return issued_at, fields


@dataclass(frozen=True, slots=True)
class DigestLinks:
    """The signed links of one digest mail (``LinkSigner.digest_links``); ``feedback``: per paper, its
    (up, down) vote URLs."""

    unsubscribe: str
    preferences: str
    view: str
    archive: str
    feedback: list[tuple[str, str]]


class LinkSigner:
    """Signs and verifies link tokens and builds the public URLs that carry them."""

    def __init__(self, secret: str, public_url: str = "http://127.0.0.1:8000",
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = TokenSigner(secret, PURPOSES, clock)
        self.public_url = public_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """The signer for ``settings``: ``secret_key``, else the public demo key if explicitly allowed."""
        return cls(secret_of(settings), settings.public_url)

    # -- tokens -----------------------------------------------------------------------------------

    def token(self, purpose: str, subscriber_id: int, *, key: str, **extra: str) -> str:
        """A token for ``purpose`` carrying the subscriber id, their link key (``Subscriber.link_key``),
        the time it was issued and the string values of ``extra``."""
        self._check_subscriber(subscriber_id, key)
        if _RESERVED & extra.keys():
            raise ValueError(f"{sorted(_RESERVED & extra.keys())} are reserved names")
        fields = [str(subscriber_id), key]
        for name, value in extra.items():
            fields += (name, value)
        return self._signer.sign(purpose, fields)

    def verify(self, purpose: str, token: str, max_age: int | None = None) -> dict[str, Any]:
        """The payload ``{"subscriber_id": int, "key": str, "issued_at": int (epoch seconds), **extra}``;
        raises ``BadToken`` on any problem. The caller compares ``key`` with the stored link key."""
        issued_at, fields = self._signer.unsign(purpose, token, max_age)
        if len(fields) < 2 or len(fields) % 2 or not fields[0].isdigit():
            raise BadToken(f"invalid {purpose} link")
        extra = dict(zip(fields[2::2], fields[3::2]))
        return {**extra, "subscriber_id": int(fields[0]), "key": fields[1], "issued_at": issued_at}

    def _check_subscriber(self, subscriber_id: int, key: str) -> None:
        if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
            raise TypeError("subscriber_id must be an int")
        if not isinstance(key, str) or not key:
            raise TypeError("key must be the subscriber's link key (a non-empty str)")

    # -- URLs -------------------------------------------------------------------------------------

    def unsubscribe_url(self, subscriber_id: int, *, key: str) -> str:
        return f"{self.public_url}/unsubscribe/{self.token('unsubscribe', subscriber_id, key=key)}"

    def preferences_url(self, subscriber_id: int, *, key: str) -> str:
        return f"{self.public_url}/preferences/{self.token('preferences', subscriber_id, key=key)}"

    def confirm_url(self, subscriber_id: int, *, key: str) -> str:
        return f"{self.public_url}/confirm/{self.token('confirm', subscriber_id, key=key)}"

    def feedback_url(self, subscriber_id: int, arxiv_id: str, vote: str, *, key: str) -> str:
        """``/feedback/{token}?paper=ID&v=up|down``. Paper and vote are also *inside* the signed token
        (keys ``p`` and ``v``): the web handler must trust the token, the query is only for humans."""
        if vote not in VOTES:
            raise ValueError(f"vote must be 'up' or 'down', not {vote!r}")
        tok = self.token("feedback", subscriber_id, key=key, p=arxiv_id, v=vote)
        return f"{self.public_url}/feedback/{tok}?paper={_query_value(arxiv_id)}&v={vote}"

    def view_url(self, subscriber_id: int, digest_date: date, *, key: str) -> str:
        """``/d/{token}``: the web page of the subscriber's digest of ``digest_date`` (key ``d``, ISO date)."""
        return f"{self.public_url}/d/{self.token('view', subscriber_id, key=key, d=digest_date.isoformat())}"

    def digest_links(self, subscriber_id: int, digest_date: date, arxiv_ids: Sequence[str], *,
                     key: str) -> DigestLinks:
        """Every signed link of one digest mail: unsubscribe, preferences, view, archive and the up/down
        feedback links of each paper (in ``arxiv_ids`` order), the same URLs as the ``*_url`` methods give
        when called in the same second, signed together (``TokenSigner.sign_many``: the subscriber's part
        of each payload is hashed once per purpose, not once per link)."""
        self._check_subscriber(subscriber_id, key)
        signer = self._signer
        issued = int(signer.clock())
        head = (str(subscriber_id), key)
        tails: list[tuple[str, ...]] = []
        for aid in arxiv_ids:
            tails += (("p", aid, "v", "up"), ("p", aid, "v", "down"))
        tokens = signer.sign_many("feedback", head, tails, issued)
        base = self.public_url
        feedback: list[tuple[str, str]] = []
        for i, aid in enumerate(arxiv_ids):
            query = f"?paper={_query_value(aid)}&v="
            feedback.append((f"{base}/feedback/{tokens[2 * i]}{query}up",
                             f"{base}/feedback/{tokens[2 * i + 1]}{query}down"))
        return DigestLinks(
            unsubscribe=f"{base}/unsubscribe/{signer.sign('unsubscribe', head, issued)}",
            preferences=f"{base}/preferences/{signer.sign('preferences', head, issued)}",
            view=f"{base}/d/{signer.sign('view', (*head, 'd', digest_date.isoformat()), issued)}",
            archive=f"{base}/archive/{signer.sign('archive', head, issued)}",
            feedback=feedback,
        )

    def archive_url(self, subscriber_id: int, *, key: str) -> str:
        """``/archive/{token}``: the list of the subscriber's past digests."""
        return f"{self.public_url}/archive/{self.token('archive', subscriber_id, key=key)}"

    def feed_url(self, subscriber_id: int, *, key: str, feed_key: str) -> str:
        """``/feed/{token}.atom``: the Atom feed of the subscriber's picks, for as long as ``feed_key`` (key
        ``f``) is the one stored on them. A feed URL does not expire (a feed reader keeps it for years; it
        is revoked by a new or no feed key), so it is signed as issued at 0 and is the same URL every time
        it is shown."""
        if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
            raise TypeError("subscriber_id must be an int")
        for name, value in (("key", key), ("feed_key", feed_key)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} must be the subscriber's {name.replace('_', ' ')} (a non-empty str)")
        tok = self._signer.sign("feed", [str(subscriber_id), key, "f", feed_key], issued_at=0)
        return f"{self.public_url}/feed/{tok}.atom"


def secret_of(settings: Settings) -> str:
    """The secret that signs links and forms: ``secret_key``, else the public demo key when
    ``demo_secret_fallback`` allows it; ``MissingSecretError`` otherwise."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    if settings.demo_secret_fallback:
        log.warning("DIGEST_SECRET_KEY is unset: signing links with the public demo key (demo only)")
        return DEMO_SECRET
    raise MissingSecretError(
        "DIGEST_SECRET_KEY is not set: it signs unsubscribe and feedback links "
        "(set it, or DIGEST_DEMO_SECRET_FALLBACK=true for a throw-away demo)"
    )
