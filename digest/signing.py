"""Signed, URL-safe tokens for the links in an email (unsubscribe, preferences, feedback, confirm).

Tokens are ``itsdangerous.URLSafeTimedSerializer`` payloads: HMAC-signed (constant-time comparison),
timestamped, and salted by *purpose*, so an unsubscribe token can never be replayed as a feedback or
confirmation token. Expiry is decided by the verifier (``max_age``), not baked into the token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

if TYPE_CHECKING:
    from digest.config import Settings

log = logging.getLogger(__name__)

PURPOSES = frozenset({"unsubscribe", "preferences", "feedback", "confirm"})
CONFIRM_MAX_AGE = 7 * 24 * 3600  # a confirmation link works for 7 days
VOTES = frozenset({"up", "down"})
# Public and therefore worthless as a secret: only used with ``demo_secret_fallback=True``.
DEMO_SECRET = "papers-digest-demo-secret-NOT-FOR-PRODUCTION"


class BadToken(ValueError):
    """A token that is malformed, tampered with, for another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class MissingSecretError(ValueError):
    """``secret_key`` is not configured (and the demo fallback is not enabled)."""


class LinkSigner:
    """Signs and verifies link tokens and builds the public URLs that carry them."""

    def __init__(self, secret: str, public_url: str = "http://127.0.0.1:8000") -> None:
        if not secret:
            raise MissingSecretError("an empty secret cannot sign links")
        self._serializer = URLSafeTimedSerializer(secret, salt="papers-digest")
        self.public_url = public_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """The signer for ``settings``: ``secret_key``, else the public demo key if explicitly allowed."""
        if settings.secret_key is not None and settings.secret_key.get_secret_value():
            return cls(settings.secret_key.get_secret_value(), settings.public_url)
        if settings.demo_secret_fallback:
            log.warning("DIGEST_SECRET_KEY is unset: signing links with the public demo key (demo only)")
            return cls(DEMO_SECRET, settings.public_url)
        raise MissingSecretError(
            "DIGEST_SECRET_KEY is not set: it signs unsubscribe and feedback links "
            "(set it, or DIGEST_DEMO_SECRET_FALLBACK=true for a throw-away demo)"
        )

    # -- tokens -----------------------------------------------------------------------------------

    def token(self, purpose: str, subscriber_id: int, **extra: Any) -> str:
        """A token for ``purpose`` carrying the subscriber id and any JSON-serialisable ``extra``."""
        _check_purpose(purpose)
        if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
            raise TypeError("subscriber_id must be an int")
        if "s" in extra:
            raise ValueError("'s' is reserved for the subscriber id")
        return self._serializer.dumps({"s": subscriber_id, **extra}, salt=purpose)

    def verify(self, purpose: str, token: str, max_age: int | None = None) -> dict[str, Any]:
        """The payload ``{"subscriber_id": int, **extra}``; raises ``BadToken`` on any problem."""
        _check_purpose(purpose)
        try:
            data = self._serializer.loads(token, salt=purpose, max_age=max_age)
        except SignatureExpired as e:
            raise BadToken(f"{purpose} link expired", expired=True) from e
        except BadData as e:
            raise BadToken(f"invalid {purpose} link") from e
        if not isinstance(data, dict) or not isinstance(data.get("s"), int):
            raise BadToken(f"invalid {purpose} link")
        out = {k: v for k, v in data.items() if k != "s"}
        out["subscriber_id"] = data["s"]
        return out

    # -- URLs -------------------------------------------------------------------------------------

    def unsubscribe_url(self, subscriber_id: int) -> str:
        return f"{self.public_url}/unsubscribe/{self.token('unsubscribe', subscriber_id)}"

    def preferences_url(self, subscriber_id: int) -> str:
        return f"{self.public_url}/preferences/{self.token('preferences', subscriber_id)}"

    def confirm_url(self, subscriber_id: int) -> str:
        return f"{self.public_url}/confirm/{self.token('confirm', subscriber_id)}"

    def feedback_url(self, subscriber_id: int, arxiv_id: str, vote: str) -> str:
        """``/feedback/{token}?paper=ID&v=up|down``. Paper and vote are also *inside* the signed token
        (keys ``p`` and ``v``): the web handler must trust the token, the query is only for humans."""
        if vote not in VOTES:
            raise ValueError(f"vote must be 'up' or 'down', not {vote!r}")
        tok = self.token("feedback", subscriber_id, p=arxiv_id, v=vote)
        return f"{self.public_url}/feedback/{tok}?{urlencode({'paper': arxiv_id, 'v': vote}, quote_via=quote)}"


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r} (one of {sorted(PURPOSES)})")
