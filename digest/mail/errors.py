"""The two outcomes a transport may raise, and the classification of SMTP replies and socket errors.

Transports raise only ``TransientSendError`` (retry later: 4xx, timeouts, connection problems, and
connection-level configuration errors such as a failed login, which are not the message's fault) or
``PermanentSendError`` (5xx for this message; ``recipient_rejected`` when the address itself was
refused). ``classify`` does that mapping for any exception.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl


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


