"""The tests' one SMTP server: a real aiosmtpd on 127.0.0.1 that records what it receives, with scripted
replies and dropped connections.

Each SMTP step has a :class:`Script`, keyed by lower-case address (MAIL: the sender, RCPT: the recipient,
DATA: the first recipient)::

    server.rcpt.queued["a@x.org"] = ["451 4.3.0 try later"]  # the next RCPT for a@x.org, then accepted
    server.rcpt.always["bad@x.org"] = "550 5.1.1 no such user"  # every RCPT for bad@x.org
    server.data.drop_for.add("a@x.org")  # close the connection instead of answering its DATA, once
    server.mail.drop_next = 1  # close the next connection at MAIL, whoever sends
    server.data_delay = 0.05  # a slow server: sleep before accepting each message

``connections`` counts the SMTP sessions served; ``tries`` lists the address of every MAIL command (each
delivery attempt starts with one), accepted or not; ``messages`` holds one :class:`Received` per accepted
recipient."""

from __future__ import annotations

import asyncio
import email
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.mailsink import free_port

OK = "250 OK"
CLOSING = "421 4.3.2 closing"


@dataclass(frozen=True)
class Received:
    """One accepted message for one recipient, as it came off the wire."""

    rcpt: str  # lower-cased, the recipient this record is for
    mail_from: str
    rcpt_tos: tuple[str, ...]  # every accepted recipient of the envelope, as given
    message_id: str
    raw: bytes

    def parse(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Script:
    """What one SMTP step answers, per lower-case address, instead of accepting."""

    queued: dict[str, list[str]] = field(default_factory=dict)  # consumed one by one, then accepted
    always: dict[str, str] = field(default_factory=dict)  # every time
    drop_next: int = 0  # close the connection the next N times, for any address
    drop_for: set[str] = field(default_factory=set)  # close the connection once for each of these

    def take(self, address: str) -> tuple[str, bool] | None:
        """The scripted reply for ``address`` and whether to close the connection instead, or None to go
        on normally. Called under the server's lock."""
        if self.drop_next:
            self.drop_next -= 1
            return CLOSING, True
        if address in self.drop_for:
            self.drop_for.discard(address)
            return CLOSING, True
        queue = self.queued.get(address)
        if queue:
            return queue.pop(0), False
        if address in self.always:
            return self.always[address], False
        return None


@dataclass
class SmtpTestServer:
    """The aiosmtpd handler and its state; :meth:`start` serves it on a free port of 127.0.0.1."""

    mail: Script = field(default_factory=Script)
    rcpt: Script = field(default_factory=Script)
    data: Script = field(default_factory=Script)
    data_delay: float = 0.0
    messages: list[Received] = field(default_factory=list)
    tries: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> SmtpTestServer:
        self._controller = _CountingController(self, hostname="127.0.0.1", port=free_port())
        self._controller.start()
        self.port = self._controller.port
        with self.lock:
            self.connections = 0  # Controller.start() connects once itself to check the server is up
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for m in self.messages:
            out.setdefault(m.rcpt, []).append(m)
        return out

    def _answer(self, step: Script, server: SMTP, address: str, accept: Callable[[], None]) -> str:
        """The reply ``step`` scripts for ``address`` (closing the connection for a drop), else ``accept()``
        and 250."""
        with self.lock:
            scripted = step.take(address.lower())
        if scripted is None:
            accept()
            return OK
        reply, drop = scripted
        if drop:
            assert server.transport is not None
            server.transport.close()
        return reply

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, mail_options: list[str]) -> str:
        def accept() -> None:
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)

        with self.lock:
            self.tries.append(address.lower())
        return self._answer(self.mail, server, address, accept)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        return self._answer(self.rcpt, server, address, lambda: envelope.rcpt_tos.append(address))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return self._answer(self.data, server, envelope.rcpt_tos[0], lambda: self._record(envelope))

    def _record(self, envelope: Envelope) -> None:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes) and envelope.mail_from is not None
        message_id = str(email.message_from_bytes(raw, policy=policy.default).get("Message-ID", ""))
        with self.lock:
            for r in envelope.rcpt_tos:
                self.messages.append(Received(r.lower(), envelope.mail_from, tuple(envelope.rcpt_tos),
                                              message_id, raw))


class _CountingController(Controller):
    """Serves one :class:`SmtpTestServer`, counting the sessions (connections) it opens."""

    def __init__(self, server: SmtpTestServer, hostname: str, port: int) -> None:
        super().__init__(server, hostname=hostname, port=port)
        self.test_server = server

    def factory(self) -> SMTP:
        with self.test_server.lock:
            self.test_server.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)
