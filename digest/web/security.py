"""CSRF tokens, the same-origin check, the client address behind trusted proxies and the in-memory rate
limiter of the web pages."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from digest.signing import BadToken, TokenSigner

CSRF_MAX_AGE = 2 * 3600  # seconds a rendered form stays valid


class CsrfError(ValueError):
    """A form submission without a valid CSRF token, or from another site."""


class Csrf:
    """Signed, time-limited CSRF tokens (``digest.signing.TokenSigner``, purpose ``csrf``: a key of its
    own), bound to one form (``subscribe``, ``preferences``, ``confirm``, ``feedback``) and, but for the
    sign-up form, to the subscriber id. Stateless: no cookie and no session are needed, and a token for
    one form or subscriber is useless for another."""

    def __init__(self, secret: str, max_age: int = CSRF_MAX_AGE) -> None:
        self._signer = TokenSigner(secret, frozenset({"csrf"}))
        self.max_age = max_age

    def token(self, form: str, subscriber_id: int | None = None) -> str:
        return self._signer.sign("csrf", _fields(form, subscriber_id))

    def check(self, token: str, form: str, subscriber_id: int | None = None) -> None:
        try:
            _, fields = self._signer.unsign("csrf", token or "", self.max_age)
        except BadToken as e:
            raise CsrfError("invalid or expired form token") from e
        if fields != _fields(form, subscriber_id):
            raise CsrfError("form token for another form")


def _fields(form: str, subscriber_id: int | None) -> list[str]:
    return [form, "" if subscriber_id is None else str(int(subscriber_id))]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(public_url: str, origin: str | None, referer: str | None) -> None:
    """Refuse a form POST whose ``Origin`` (or, without one, ``Referer``) is not ``public_url``'s.
    Requests carrying neither (old clients, privacy settings) rely on the CSRF token alone."""
    expected = origin_of(public_url)
    if origin is not None:
        if origin.lower().rstrip("/") != expected:
            raise CsrfError(f"form posted from another origin ({origin})")
        return
    if referer:
        if origin_of(referer) != expected:
            raise CsrfError("form posted from another site")


Network = IPv4Network | IPv6Network


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``DIGEST_WEB_TRUSTED_PROXIES`` as networks (a bare address is a network of one)."""
    return tuple(ip_network(v, strict=False) for v in values)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_key(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client address a request counts against: the TCP peer, unless the peer is a trusted proxy;
    then the right-most X-Forwarded-For hop that is not a trusted proxy (what the nearest proxy saw;
    anything left of it is whatever the client wrote). An unreadable hop means the peer itself."""
    if peer is None:
        return "unknown"
    if not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ip_address(hop)
        except ValueError:
            return peer
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds per key (client address), sliding window, in
    memory: per process, reset on restart. Enough to stop a form being hammered from one address;
    a multi-process deployment would use a shared store (or the reverse proxy's limiter)."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Record a hit; ``None`` if allowed, else the seconds until the next hit would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._hits) >= self.max_keys:
                self._prune(now)
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(q[0] + self.window - now, 0.0)
            q.append(now)
            return None

    def _prune(self, now: float) -> None:
        for k in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window]:
            del self._hits[k]
        if len(self._hits) >= self.max_keys:  # still full (an address spray): forget the oldest half
            for k in sorted(self._hits, key=lambda k: self._hits[k][-1])[: self.max_keys // 2]:
                del self._hits[k]
