"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests, with fault injection.

Faults are scripted per recipient: ``rcpt_replies["a@x"] = ["451 4.3.0 try later"]`` answers the next RCPT
for that address with 451 (the list is consumed, then the address is accepted); ``data_replies`` the same
for DATA; ``drop_on_data`` closes the connection instead of answering DATA for those addresses (once each);
``data_delay`` sleeps before accepting each message (a slow server)."""

from __future__ import annotations

import asyncio
import email
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.mailsink import free_port


@dataclass
class Received:
    rcpt: str
    message_id: str
    raw: bytes

    def parse(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    drop_on_data: set[str] = field(default_factory=set)
    data_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for m in self.messages:
            out.setdefault(m.rcpt, []).append(m)
        return out

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        with self.lock:
            queue = self.rcpt_replies.get(address.lower())
            if queue:
                return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        rcpt = envelope.rcpt_tos[0].lower()
        with self.lock:
            if rcpt in self.drop_on_data:
                self.drop_on_data.discard(rcpt)
                server.transport.close()  # type: ignore[union-attr]
                return "421 closing"
            queue = self.data_replies.get(rcpt)
            if queue:
                return queue.pop(0)
            raw = envelope.original_content or envelope.content  # type: ignore[assignment]
            assert isinstance(raw, bytes)
            msg = email.message_from_bytes(raw, policy=policy.default)
            for r in envelope.rcpt_tos:
                self.messages.append(Received(r.lower(), str(msg.get("Message-ID", "")), raw))
        return "250 Message accepted"


class CountingSMTP(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        if isinstance(handler, Recorder):
            with handler.lock:
                handler.connections += 1
        super().connection_made(transport)  # type: ignore[arg-type]


class RecordingController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def start_server(recorder: Recorder | None = None) -> tuple[RecordingController, Recorder]:
    recorder = recorder or Recorder()
    controller = RecordingController(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    with recorder.lock:
        recorder.connections = 0  # Controller.start() connects once itself to check the server is up
    return controller, recorder
