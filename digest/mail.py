"""The MIME message of a digest, and the transports that deliver it: SMTP, or ``.eml`` files (outbox).

Transports raise only ``TransientSendError`` (retry later: 4xx, timeouts, connection problems,
and connection-level configuration errors such as a failed login, which are not the message's fault)
or ``PermanentSendError`` (5xx for this message; ``recipient_rejected`` when the address itself was
refused). ``classify`` does that mapping for any exception.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import smtplib
import socket
import ssl
import tempfile
from datetime import date, datetime, timezone
from email import policy as email_policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.render import RenderedEmail

# SMTP line endings; headers are folded only beyond 998 characters so URLs in List-Unsubscribe are
# never split or turned into encoded words.
POLICY = email_policy.SMTP.clone(max_line_length=998)
_CRLF = re.compile(r"[\r\n]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_ADDR_SPEC = re.compile(r'^[^\s<>,;:"()\[\]\\@]+@[^\s<>,;:"()\[\]\\@]+$')
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


# -- errors --------------------------------------------------------------------------------------------


class SendError(Exception):
    """Base of the two outcomes a transport may raise."""

    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(f"{code} {detail}" if code is not None else detail)
        self.code = code
        self.detail = detail


class TransientSendError(SendError):
    """Try again later: 4xx replies, timeouts, refused or dropped connections."""


class PermanentSendError(SendError):
    """Do not retry this message: a 5xx reply. ``recipient_rejected``: the address itself was refused."""

    def __init__(self, code: int | None, detail: str, *, recipient_rejected: bool = False) -> None:
        super().__init__(code, detail)
        self.recipient_rejected = recipient_rejected


def _text(resp: bytes | str | None) -> str:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join((resp or "").split())


def _bad_recipient(code: int, detail: str) -> bool:
    """Whether a 5xx reply to RCPT (or per-recipient DATA) means the address itself is bad."""
    enhanced = re.match(r"5\.(\d+)\.\d+", detail)
    if enhanced:
        return enhanced.group(1) == "1"  # 5.1.x: bad destination mailbox/system; 5.7.x policy is not
    return code in (550, 551, 553)


def _by_code(code: int, detail: str, *, rcpt: bool = False) -> SendError:
    if 400 <= code < 500:
        return TransientSendError(code, detail)
    if 500 <= code < 600:
        return PermanentSendError(code, detail, recipient_rejected=rcpt and _bad_recipient(code, detail))
    return TransientSendError(code, detail or "unexpected SMTP reply")


def classify(exc: BaseException) -> TransientSendError | PermanentSendError:
    """Map an smtplib / socket / OS exception to ``TransientSendError`` or ``PermanentSendError``."""
    if isinstance(exc, (TransientSendError, PermanentSendError)):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, resp = next(iter(exc.recipients.values()), (-1, b"recipient refused"))
        return _by_code(code, _text(resp), rcpt=True)
    if isinstance(exc, smtplib.SMTPConnectError):  # greeting refused: the server, not the message
        return TransientSendError(exc.smtp_code, f"connect: {_text(exc.smtp_error)}")
    if isinstance(exc, (smtplib.SMTPAuthenticationError, smtplib.SMTPHeloError)):
        # configuration or server trouble, independent of the message: failing it would lose mail
        return TransientSendError(exc.smtp_code, f"{type(exc).__name__}: {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, _text(exc.smtp_error), rcpt=True)
    if isinstance(exc, smtplib.SMTPResponseException):  # SMTPSenderRefused and the rest
        return _by_code(exc.smtp_code, _text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientSendError(None, f"server disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TransientSendError(None, f"server does not support: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientSendError(None, f"timeout: {exc}")
    if isinstance(exc, ssl.SSLError):
        return TransientSendError(None, f"TLS: {exc}")
    if isinstance(exc, (ConnectionError, OSError)):
        return TransientSendError(None, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return TransientSendError(None, f"{type(exc).__name__}: {exc}")
    # Anything else (bad address encoding, a bug building the message) will fail again identically.
    return PermanentSendError(None, f"{type(exc).__name__}: {exc}")


# -- the message ---------------------------------------------------------------------------------------


def _one_line(value: str, what: str) -> str:
    """Header-safe text: CR/LF and other controls become spaces (names, subjects)."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _refuse_crlf(value: str, what: str) -> str:
    """Values that must be exact (addresses, ids, URLs): refused outright if they hold a control char."""
    if _CONTROL.search(value):
        raise ValueError(f"{what} contains a line break or control character")
    return value.strip()


def message_id(subscriber_id: int, digest_date: date, domain: str) -> str:
    """``<digest-YYYY-MM-DD-s<ID>-<hash>@domain>``: the same inputs always give the same id."""
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise ValueError(f"invalid Message-ID domain {domain!r}")
    day = digest_date.isoformat()
    digest = hashlib.sha256(f"papers-digest:{subscriber_id}:{day}:{domain}".encode()).hexdigest()[:12]
    return f"<digest-{day}-s{int(subscriber_id)}-{digest}@{domain}>"


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


def build_message(
    rendered: RenderedEmail,
    *,
    to_addr: str,
    to_name: str | None,
    from_addr: str,
    message_id: str,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    date: datetime | None = None,
) -> EmailMessage:
    """The ``multipart/alternative`` digest (text, then HTML) with every header the design requires.

    A name or subject containing CR/LF is flattened to one line; addresses, ids and URLs containing
    one are refused with ``ValueError``: no value can inject a header.
    """
    to_addr = _refuse_crlf(to_addr, "to_addr")
    if not _ADDR_SPEC.match(to_addr):
        raise ValueError(f"to_addr must be one plain address (local@domain), not {to_addr!r}")
    from_addr = _refuse_crlf(from_addr, "from_addr")
    mid = _refuse_crlf(message_id, "message_id")
    if not (mid.startswith("<") and mid.endswith(">") and "@" in mid):
        raise ValueError(f"message_id must look like <local@domain>, not {mid!r}")
    unsub = _refuse_crlf(unsubscribe_url, "unsubscribe_url")
    mailto = _refuse_crlf(unsubscribe_mailto, "unsubscribe_mailto")
    if not mailto.startswith("mailto:"):
        mailto = f"mailto:{mailto}"
    if any(c in unsub + mailto for c in "<>, "):
        raise ValueError("unsubscribe URLs must not contain '<', '>', ',' or spaces")
    when = date or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)

    name = _one_line(to_name, "to_name") if to_name else ""
    msg = EmailMessage(policy=POLICY)
    _set(msg, "From", from_addr)
    _set(msg, "To", formataddr((name, to_addr)) if name else to_addr)
    _set(msg, "Subject", _one_line(rendered.subject, "subject"))
    _set(msg, "Date", format_datetime(when))
    _set(msg, "Message-ID", mid)
    _set(msg, "List-Id", _one_line(list_id, "list_id"))
    _set(msg, "List-Unsubscribe", f"<{unsub}>, <{mailto}>")
    _set(msg, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    _set(msg, "MIME-Version", "1.0")
    msg.set_raw("Content-Type", _ALTERNATIVE)
    msg.set_payload([_body_part(rendered.text, "plain"), _body_part(rendered.html, "html")])
    return msg


def envelope(msg: EmailMessage) -> tuple[str, list[str]]:
    """Envelope sender and recipients from the From and To headers."""
    sender = parseaddr(str(msg["From"]))[1]
    rcpts = [a for _, a in getaddresses([str(v) for v in msg.get_all("To", [])]) if a]
    if not sender or not rcpts:
        raise ValueError("message has no From or To address")
    return sender, rcpts


# -- transports ----------------------------------------------------------------------------------------


class SmtpTransport:
    """One SMTP connection, opened lazily on the first ``send`` and reused; not thread-safe (use one
    transport per worker). After a dropped connection the next ``send`` reconnects; a connection found
    dead before anything was sent (stale, idle-closed) is reopened and the message retried once."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("smtp_host is not set")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.timeout = settings.smtp_timeout
        self.username = settings.smtp_username
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        self._conn: smtplib.SMTP | None = None
        self.connections_opened = 0

    # context manager
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
        except BaseException:
            _quiet_close(conn)
            raise
        self.connections_opened += 1
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            _quiet_close(self._conn)
            self._conn = None

    def send(self, msg: EmailMessage) -> None:
        try:
            sender, rcpts = envelope(msg)
            data = msg.as_bytes(policy=POLICY)
        except Exception as e:
            raise classify(e) from e
        reused = self._conn is not None
        try:
            self._transaction(sender, rcpts, data)
        except _StaleConnection as stale:
            self._drop()
            if not reused:
                raise classify(stale.cause) from stale.cause
            try:  # nothing was sent on the dead connection: one retry on a fresh one
                self._transaction(sender, rcpts, data)
            except _StaleConnection as again:
                self._drop()
                raise classify(again.cause) from again.cause

    def _transaction(self, sender: str, rcpts: list[str], data: bytes) -> None:
        # MAIL: a failure to even talk to the server is "stale", safe to retry (nothing was sent).
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            code, resp = conn.mail(sender)
        except (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, TimeoutError) as e:
            raise _StaleConnection(e) from e
        except Exception as e:
            self._drop()
            raise classify(e) from e
        try:
            if code == 421:
                raise smtplib.SMTPSenderRefused(code, resp, sender)
            if code != 250:
                self._rset()
                raise smtplib.SMTPSenderRefused(code, resp, sender)
            for rcpt in rcpts:
                code, resp = conn.rcpt(rcpt)
                if code not in (250, 251):
                    if code != 421:
                        self._rset()
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, resp)})
            code, resp = conn.data(data)  # raises SMTPDataError itself only for a non-354 reply
            if code != 250:
                raise smtplib.SMTPDataError(code, resp)
        except smtplib.SMTPResponseException as e:
            if e.smtp_code == 421:
                self._drop()
            elif isinstance(e, smtplib.SMTPDataError):
                self._rset()
            raise classify(e) from e
        except smtplib.SMTPRecipientsRefused as e:
            if next(iter(e.recipients.values()))[0] == 421:
                self._drop()
            raise classify(e) from e
        except Exception as e:  # dropped mid-transaction: outcome unknown, the caller re-sends
            self._drop()
            raise classify(e) from e

    def _rset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except Exception:
            self._drop()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except Exception:
                pass
            self._drop()


class _StaleConnection(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _quiet_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except Exception:
        pass


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._@-]")


class FileTransport:
    """Writes each message to ``<directory>/<message-id>.eml`` atomically; the same Message-ID
    overwrites the same file, so re-sending after a crash never duplicates a mail."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path_for(self, message_id: str) -> Path:
        name = _UNSAFE_FILENAME.sub("_", message_id.strip().strip("<>")).lstrip(".")
        if not name:
            raise ValueError("empty Message-ID")
        return self.directory / f"{name[:200]}.eml"

    def send(self, msg: EmailMessage) -> None:
        mid = msg["Message-ID"]
        if not mid:
            raise PermanentSendError(None, "message has no Message-ID")
        try:
            target = self.path_for(str(mid))
            data = msg.as_bytes(policy=POLICY)
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except Exception as e:
            raise classify(e) from e

    def close(self) -> None:
        pass


def make_transport(settings: Settings) -> SmtpTransport | FileTransport:
    """SMTP when ``smtp_host`` is set, else ``.eml`` files in ``outbox_dir``."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileTransport(settings.outbox_dir)
