"""The two outcomes a transport may raise, and the classification of SMTP replies and socket errors.

Transports raise only ``TransientSendError`` (retry later: 4xx, timeouts, connection problems, and
connection-level configuration errors such as a failed login, which are not the message's fault) or
``PermanentSendError`` (5xx for this message), which says whose fault the refusal is (``Refusal``).
``classify`` does that mapping for any exception.

Whose fault a 5xx is (RFC 3463 enhanced status codes, then the wording):

- the *recipient's* only when the reply carries a code that names the destination mailbox: 5.1.1 (bad
  mailbox), 5.1.2 (bad system), 5.1.3 (bad address syntax), 5.1.6 (mailbox moved), 5.1.10 (null MX) and
  5.2.1 (mailbox disabled). Only these suppress an address. 5.1.0 names no mailbox (Postfix uses it for
  senders too), 5.5.x is about the protocol, not a mailbox, so neither is enough;
- the *message's* for its size or content: 5.2.2 (mailbox full), 5.2.3, 5.3.4 (too big), 5.6.x;
- the *server's* for everything else: relay, authentication, sender or policy wording, any 5.7.x, and a
  reply with no enhanced code at all (``550 relay not permitted``). Such a refusal would be the same for
  every recipient: it must never suppress anyone, and the sender keeps the row for a later try;
- the *address's* when it cannot be sent at all (a non-ASCII local part without SMTPUTF8): failed for
  this address, never suppressed, never counted against the server.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from enum import StrEnum


class SendError(Exception):
    """Base of the two outcomes a transport may raise."""

    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(f"{code} {detail}" if code is not None else detail)
        self.code = code
        self.detail = detail


class TransientSendError(SendError):
    """Try again later: 4xx replies, timeouts, refused or dropped connections. ``unreachable``: the server
    could not be reached or would not open a session (refused connection, unknown host, failed greeting,
    TLS or login): every recipient would meet the same, so each such attempt counts toward the brake."""

    unreachable: bool = False


def unreachable(exc: BaseException) -> TransientSendError | PermanentSendError:
    """``classify(exc)`` for a failure to open a session: a transient one is marked ``unreachable``."""
    error = classify(exc)
    if isinstance(error, TransientSendError):
        error.unreachable = True
    return error


class Refusal(StrEnum):
    """Whose fault a permanent refusal is (see the module docstring)."""

    recipient = "recipient"  # the mailbox does not exist or is disabled: suppress the address
    message = "message"  # this message (size, content): fail it
    address = "address"  # an address this sender cannot put on the wire (non-ASCII): fail it
    relay = "relay"  # the server's, from here on: the row stays planned, nobody is suppressed
    auth = "auth"
    sender = "sender"
    policy = "policy"
    server = "server"  # no code naming a mailbox, no telling wording: assume the server


SERVER_REFUSALS = frozenset({Refusal.relay, Refusal.auth, Refusal.sender, Refusal.policy, Refusal.server})


class PermanentSendError(SendError):
    """Do not send this message again as it is: a 5xx reply. ``refusal`` says whose fault it is."""

    def __init__(self, code: int | None, detail: str, *, refusal: Refusal = Refusal.server) -> None:
        super().__init__(code, detail)
        self.refusal = refusal

    @property
    def recipient_rejected(self) -> bool:
        """The address itself was refused (a mailbox code): the subscriber is suppressed."""
        return self.refusal is Refusal.recipient

    @property
    def by_server(self) -> bool:
        """A refusal the server would give any recipient: not a reason to fail or suppress anyone."""
        return self.refusal in SERVER_REFUSALS


def _text(resp: bytes | str | None) -> str:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join((resp or "").split())


# An enhanced status code anywhere in the reply: "5.1.1 ...", qmail's "(#5.7.1)", "[5.7.1]".
_ENHANCED = re.compile(r"(?:^|[\s(#\[])([245])\.(\d{1,3})\.(\d{1,3})(?=$|[\s)\].,;:])")
_WORDING: tuple[tuple[Refusal, re.Pattern[str]], ...] = (
    (Refusal.relay, re.compile(r"relay|rcpthosts", re.I)),
    (Refusal.auth, re.compile(r"authentication (?:is )?required|must (?:first )?authenticate|starttls|log ?in required",
                              re.I)),
    (Refusal.sender, re.compile(r"\bsender\b", re.I)),
    (Refusal.policy, re.compile(r"polic|spam|block|black ?list|deny ?list|reputation|dnsbl|\brbl\b|banned", re.I)),
)
_MAILBOX_CODES = frozenset({(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)})
_MESSAGE_CODES = frozenset({(2, 2), (2, 3), (3, 4)})


def refusal_of(code: int, detail: str, *, rcpt: bool) -> Refusal:
    """Whose fault the 5xx reply ``code detail`` is; ``rcpt``: it answered one recipient (RCPT, or DATA
    of a one-recipient message), so a mailbox code may name that recipient."""
    if code in (530, 535):
        return Refusal.auth
    for kind, wording in _WORDING:
        if wording.search(detail):
            return kind
    enhanced = _ENHANCED.search(detail)
    if enhanced is None:
        return Refusal.server
    subject, detail_code = int(enhanced.group(2)), int(enhanced.group(3))
    if subject == 7:
        return Refusal.policy
    if (subject, detail_code) in ((1, 7), (1, 8)):
        return Refusal.sender
    if (subject, detail_code) in _MAILBOX_CODES:
        return Refusal.recipient if rcpt else Refusal.sender
    if (subject, detail_code) in _MESSAGE_CODES or subject == 6:
        return Refusal.message
    return Refusal.server


def _by_code(code: int, detail: str, *, rcpt: bool = False) -> SendError:
    if 400 <= code < 500:
        return TransientSendError(code, detail)
    if 500 <= code < 600:
        return PermanentSendError(code, detail, refusal=refusal_of(code, detail, rcpt=rcpt))
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
    if isinstance(exc, UnicodeEncodeError):  # a non-ASCII address, and no SMTPUTF8 to carry it
        return PermanentSendError(None, f"address cannot be sent without SMTPUTF8: {exc}", refusal=Refusal.address)
    # Anything else (a bug building the message) will fail again identically.
    return PermanentSendError(None, f"{type(exc).__name__}: {exc}", refusal=Refusal.message)


