"""Building a mail: the MIME message with every header the design requires, its Message-ID, and the
``OutgoingMail`` (envelope + bytes) that a transport puts on the wire.

Every mail the product sends (digests and confirmations) goes through ``build_mail``, so every one gets
the same header guards: a name or subject holding a line break or any other control character is
flattened to one line; an address, id or URL holding one is refused with ``ValueError``: no value can
inject a header.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING

from digest.text import has_control, one_line

if TYPE_CHECKING:
    from digest.render import RenderedEmail

# SMTP line endings; headers are folded only beyond 998 characters so URLs in List-Unsubscribe are
# never split or turned into encoded words.
POLICY = email_policy.SMTP.clone(max_line_length=998)
_ADDR_SPEC = re.compile(r'^[^\s<>,;:"()\[\]\\@]+@[^\s<>,;:"()\[\]\\@]+$')
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """What a transport sends: the envelope, known when the mail is built (never re-parsed from the
    headers), and the message as bytes with CRLF line endings."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes

    def parse(self) -> EmailMessage:
        """The message as an ``EmailMessage`` (for inspection; the transports send ``data``)."""
        msg = message_from_bytes(self.data, policy=email_policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass(frozen=True, slots=True)
class ListHeaders:
    """The headers of a list mail (a digest): ``List-Id`` and RFC 8058 one-click ``List-Unsubscribe`` (the
    HTTPS URL only: nothing reads a mailbox, so no ``mailto:`` is advertised)."""

    list_id: str
    unsubscribe_url: str


def _exact(value: str, what: str) -> str:
    """Values that must be exact (addresses, ids, URLs): refused outright if they hold a control char."""
    if has_control(value):
        raise ValueError(f"{what} contains a line break or control character")
    return value.strip()


def message_id(subscriber_id: int, day: date, domain: str, kind: str = "digest") -> str:
    """``<KIND-YYYY-MM-DD-s<ID>-<hash>@domain>`` for the ``kind`` mail ("digest", "confirm") of one
    subscriber and day: the same inputs always give the same id, so a mail re-sent after a crash carries
    the Message-ID of the first attempt and receivers can drop the copy."""
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise ValueError(f"invalid Message-ID domain {domain!r}")
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"invalid Message-ID kind {kind!r}")
    stamp = day.isoformat()
    seed = f"{int(subscriber_id)}:{stamp}:{domain}" if kind == "digest" else f"{kind}:{int(subscriber_id)}:{stamp}:{domain}"
    digest = hashlib.sha256(f"papers-digest:{seed}".encode()).hexdigest()[:12]
    return f"<{kind}-{stamp}-s{int(subscriber_id)}-{digest}@{domain}>"


def mail_domain(from_addr: str) -> str:
    """The domain of a From address (``"Papers <digest@example.org>"`` -> ``"example.org"``)."""
    addr = parseaddr(from_addr)[1]
    return addr.rpartition("@")[2] or "localhost"


def _set(msg: EmailMessage, name: str, value: str) -> None:
    """Set a header cheaply. Values are already validated single lines; an ASCII value that fits on a
    line is stored as is (the header registry's parse costs ~0.1-0.3 ms per header and these values
    need no encoding), anything else (non-ASCII names and subjects) goes through the policy, which
    RFC 2047-encodes it."""
    if value.isascii() and len(value) + len(name) + 2 <= 998:
        msg.set_raw(name, value)
    else:
        msg[name] = value


# Constant headers parsed once: stored header objects are used as they are, never re-parsed (the
# generator reads Content-Type several times). "=_" can never occur in base64, so a constant
# boundary is safe for base64-encoded parts.
_BOUNDARY = "=_papers-digest-alternative"
_ALTERNATIVE = POLICY.header_factory("Content-Type", f'multipart/alternative; boundary="{_BOUNDARY}"')
_TEXT_TYPES = {
    sub: POLICY.header_factory("Content-Type", f'text/{sub}; charset="utf-8"') for sub in ("plain", "html")
}
_BASE64 = POLICY.header_factory("Content-Transfer-Encoding", "base64")


def _body_part(content: str, subtype: str) -> MIMEPart:
    # base64 via binascii is several times cheaper than the email package's pure-Python
    # quoted-printable, and safe for any line length (inlined HTML has long lines).
    part = MIMEPart(policy=POLICY)
    part.set_raw("Content-Type", _TEXT_TYPES[subtype])
    part.set_raw("Content-Transfer-Encoding", _BASE64)
    body = content.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")  # canonical CRLF
    part.set_payload(base64.encodebytes(body).decode("ascii").replace("\n", "\r\n"))
    return part


def build_mail(
    rendered: RenderedEmail,
    *,
    to_addr: str,
    to_name: str | None,
    from_addr: str,
    message_id: str,
    list_headers: ListHeaders | None = None,
    auto_submitted: bool = False,
    date: datetime | None = None,
) -> OutgoingMail:
    """The ``multipart/alternative`` mail (text, then HTML), flattened once into the bytes a transport
    sends, with its envelope. ``list_headers``: a list mail (digest); ``auto_submitted``: a mail the
    system sends on its own (a confirmation), marked so that auto-responders stay quiet (RFC 3834)."""
    to_addr = _exact(to_addr, "to_addr")
    if not _ADDR_SPEC.match(to_addr):
        raise ValueError(f"to_addr must be one plain address (local@domain), not {to_addr!r}")
    from_addr = _exact(from_addr, "from_addr")
    sender = parseaddr(from_addr)[1]
    if not sender:
        raise ValueError(f"from_addr has no address: {from_addr!r}")
    mid = _exact(message_id, "message_id")
    if not (mid.startswith("<") and mid.endswith(">") and "@" in mid):
        raise ValueError(f"message_id must look like <local@domain>, not {mid!r}")
    when = date or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)

    name = one_line(to_name)
    msg = EmailMessage(policy=POLICY)
    _set(msg, "From", from_addr)
    _set(msg, "To", formataddr((name, to_addr)) if name else to_addr)
    _set(msg, "Subject", one_line(rendered.subject))
    _set(msg, "Date", format_datetime(when))
    _set(msg, "Message-ID", mid)
    if list_headers is not None:
        unsub = _exact(list_headers.unsubscribe_url, "unsubscribe_url")
        if any(c in unsub for c in "<>, "):
            raise ValueError("the unsubscribe URL must not contain '<', '>', ',' or spaces")
        _set(msg, "List-Id", one_line(list_headers.list_id))
        _set(msg, "List-Unsubscribe", f"<{unsub}>")
        _set(msg, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    if auto_submitted:
        _set(msg, "Auto-Submitted", "auto-generated")
    _set(msg, "MIME-Version", "1.0")
    msg.set_raw("Content-Type", _ALTERNATIVE)
    msg.set_payload([_body_part(rendered.text, "plain"), _body_part(rendered.html, "html")])
    return OutgoingMail(sender, (to_addr,), mid, msg.as_bytes(policy=POLICY))
