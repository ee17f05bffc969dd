"""The transports that deliver an ``OutgoingMail``: SMTP over one reused connection, or ``.eml`` files in
a folder (the outbox when no SMTP host is configured). Both satisfy ``Transport`` and raise only
``TransientSendError`` or ``PermanentSendError`` (``digest.mail.errors``)."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from digest.mail.errors import PermanentSendError, Refusal, classify, unreachable
from digest.mail.message import OutgoingMail

if TYPE_CHECKING:
    from digest.config import Settings


class Transport(Protocol):
    """Delivers mails; used as a context manager (``close`` on exit). One per thread: not thread-safe."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def send(self, mail: OutgoingMail) -> None:
        """Deliver ``mail`` or raise ``TransientSendError`` / ``PermanentSendError``."""

    def close(self) -> None: ...


class _Closing:
    """``with transport:`` closes it on the way out."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        pass


class SmtpTransport(_Closing):
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

    def send(self, mail: OutgoingMail) -> None:
        sender, rcpts, data = mail.sender, list(mail.recipients), mail.data
        if not (sender.isascii() and all(r.isascii() for r in rcpts)):  # before any command: the connection stays
            raise PermanentSendError(None, f"{', '.join(rcpts)}: a non-ASCII address needs SMTPUTF8, which this "
                                     "sender does not use", refusal=Refusal.address)
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
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as e:  # no session at all: the server's trouble, whoever the recipient
                raise unreachable(e) from e
        try:
            conn = self._conn
            code, resp = _command(conn, "mail", "from:", sender)
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
                code, resp = _command(conn, "rcpt", "to:", rcpt)
                if code not in (250, 251):
                    if code != 421:
                        self._rset()
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, resp)})
            code, resp = _data(conn, data)  # raises SMTPDataError itself only for a non-354 reply
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


_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def _command(conn: smtplib.SMTP, verb: str, arg: str, address: str) -> tuple[int, bytes]:
    """``MAIL FROM:<address>`` or ``RCPT TO:<address>`` and its reply, as ``conn.mail`` / ``conn.rcpt``
    send them without options. A plain ``local@domain`` (what ``build_mail`` puts in every envelope) is
    written as it is; anything else goes through smtplib's ``quoteaddr`` (``email.utils.parseaddr``,
    a twentieth of a millisecond per address)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        conn.putcmd(verb, f"{arg}<{address}>")
    else:
        conn.putcmd(verb, f"{arg}{smtplib.quoteaddr(address)}")
    return conn.getreply()


def _data(conn: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """``smtplib.SMTP.data`` for bytes, with its dot-stuffing done by one ``bytes.replace`` instead of a
    multi-line regular expression (a third of a millisecond on a 45 KiB digest): a line that starts
    with a dot gets a second one (RFC 5321 4.5.2), the message ends with CRLF, then the lone dot."""
    conn.putcmd("data")
    code, resp = conn.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, resp)
    q = data.replace(b"\n.", b"\n..")
    if q.startswith(b"."):
        q = b"." + q
    conn.send(q + (b".\r\n" if q.endswith(b"\r\n") else b"\r\n.\r\n"))
    return conn.getreply()


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


class FileTransport(_Closing):
    """Writes each message to ``<directory>/<message-id>.eml`` atomically; the same Message-ID
    overwrites the same file, so re-sending after a crash never duplicates a mail."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, message_id: str) -> Path:
        name = _UNSAFE_FILENAME.sub("_", message_id.strip().strip("<>")).lstrip(".")
        if not name:
            raise ValueError("empty Message-ID")
        return self.directory / f"{name[:200]}.eml"

    def send(self, mail: OutgoingMail) -> None:
        if not mail.message_id:
            raise PermanentSendError(None, "message has no Message-ID", refusal=Refusal.message)
        try:
            target = self.path_for(mail.message_id)
            data = mail.data
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


def make_transport(settings: Settings) -> Transport:
    """SMTP when ``smtp_host`` is set, else ``.eml`` files in ``outbox_dir``."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileTransport(settings.outbox_dir)
