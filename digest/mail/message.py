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
from functools import lru_cache
from datetime import date, datetime, timezone
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING

import numpy as np
from email_validator import EmailNotValidError, validate_email

from digest.mail.errors import PermanentSendError, Refusal
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


@lru_cache(maxsize=64)
def _address_of(from_addr: str) -> str:
    """The address of a From header value (the same one in every mail of a run: cached)."""
    return parseaddr(from_addr)[1]


def mail_domain(from_addr: str) -> str:
    """The domain of a From address (``"Papers <digest@example.org>"`` -> ``"example.org"``)."""
    addr = parseaddr(from_addr)[1]
    return addr.rpartition("@")[2] or "localhost"


def _header(name: str, value: str) -> bytes:
    """One header line, CRLF-terminated. Values are already validated single lines: an ASCII value that
    fits on a line is written as it is; anything else (non-ASCII names and subjects, overlong values) goes
    through the email policy's header registry, which RFC 2047-encodes and folds it."""
    if value.isascii() and len(value) + len(name) + 2 <= 998:
        return f"{name}: {value}\r\n".encode("ascii")
    return POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii")


# "=_" can never occur in base64, so a constant boundary is safe for base64-encoded parts.
_BOUNDARY = b"=_papers-digest-alternative"
_MULTIPART = (b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="' + _BOUNDARY + b'"\r\n\r\n')
_PART_HEAD = {
    sub: b"--" + _BOUNDARY + b'\r\nContent-Type: text/' + sub.encode() + b'; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    for sub in ("plain", "html")
}
_CLOSE = b"\r\n--" + _BOUNDARY + b"--\r\n"
_CRLF = np.frombuffer(b"\r\n", np.uint8)
# A mail with no HTML (a subscriber who wants plain text only): one text/plain body, no multipart.
_TEXT_ONLY = (b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
              b"Content-Transfer-Encoding: base64\r\n\r\n")


def _body(content: str) -> bytes:
    """The base64 body of one part: canonical CRLF line ends, UTF-8, 76-character lines ending in CRLF.
    base64 (binascii) is several times cheaper than quoted-printable and safe for any line length
    (inlined HTML has long lines)."""
    data = content.encode("utf-8")  # bytes.replace is several times cheaper than on a non-ASCII str
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    data = data.replace(b"\n", b"\r\n")
    encoded = base64.b64encode(data)  # one C call, then cut into lines by numpy (no loop per line)
    full = len(encoded) // 76
    lines = np.empty((full, 78), np.uint8)
    lines[:, :76] = np.frombuffer(encoded, np.uint8, full * 76).reshape(full, 76)
    lines[:, 76:] = _CRLF
    rest = encoded[full * 76:]
    return lines.tobytes() + (rest + b"\r\n" if rest else b"")


def wire_address(address: str) -> str:
    """``address`` as it can travel without SMTPUTF8: an internationalised domain becomes its IDNA (ASCII)
    form; a non-ASCII mailbox name cannot travel at all (``PermanentSendError``, ``Refusal.address``:
    this address fails alone, it says nothing about the server)."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        try:
            domain = validate_email(f"postmaster@{domain}", check_deliverability=False).ascii_domain
        except EmailNotValidError as e:
            raise PermanentSendError(None, f"{address}: the domain has no IDNA form ({e})",
                                     refusal=Refusal.address) from e
    if not local.isascii():
        raise PermanentSendError(None, f"{address}: a non-ASCII mailbox name needs SMTPUTF8, which this sender "
                                 "does not use", refusal=Refusal.address)
    return f"{local}@{domain}"


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
    """The ``multipart/alternative`` mail (text, then HTML, each base64), written straight to the bytes a
    transport sends, with its envelope; a ``rendered`` without HTML (plain text only) is one ``text/plain``
    body with the same headers. ``list_headers``: a list mail (digest); ``auto_submitted``: a mail
    the system sends on its own (a confirmation), marked so that auto-responders stay quiet (RFC 3834).
    Raises ``ValueError`` for a value that could inject a header, and ``PermanentSendError`` for an
    address that cannot travel (``wire_address``)."""
    to_addr = _exact(to_addr, "to_addr")
    if not _ADDR_SPEC.match(to_addr):
        raise ValueError(f"to_addr must be one plain address (local@domain), not {to_addr!r}")
    to_addr = wire_address(to_addr)
    from_addr = _exact(from_addr, "from_addr")
    sender = _address_of(from_addr)
    if not sender:
        raise ValueError(f"from_addr has no address: {from_addr!r}")
    mid = _exact(message_id, "message_id")
    if not (mid.startswith("<") and mid.endswith(">") and "@" in mid):
        raise ValueError(f"message_id must look like <local@domain>, not {mid!r}")
    when = date or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)

    name = one_line(to_name)
    head = [
        _header("From", from_addr),
        _header("To", formataddr((name, to_addr)) if name else to_addr),
        _header("Subject", one_line(rendered.subject)),
        _header("Date", format_datetime(when)),
        _header("Message-ID", mid),
    ]
    if list_headers is not None:
        unsub = _exact(list_headers.unsubscribe_url, "unsubscribe_url")
        if any(c in unsub for c in "<>, "):
            raise ValueError("the unsubscribe URL must not contain '<', '>', ',' or spaces")
        head += [
            _header("List-Id", one_line(list_headers.list_id)),
            _header("List-Unsubscribe", f"<{unsub}>"),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
    if auto_submitted:
        head.append(b"Auto-Submitted: auto-generated\r\n")
    if not rendered.html:
        data = b"".join((*head, _TEXT_ONLY, _body(rendered.text)))
    else:
        data = b"".join((*head, _MULTIPART, _PART_HEAD["plain"], _body(rendered.text), b"\r\n",
                         _PART_HEAD["html"], _body(rendered.html), _CLOSE))
    return OutgoingMail(sender, (to_addr,), mid, data)
