"""A real SMTP server on 127.0.0.1 that stores every message it accepts as an ``.eml`` file: the demo's
inbox (and a handy local catcher for development)."""

from __future__ import annotations

import email
import re
import socket
from dataclasses import dataclass, field
from email import policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MailSink:
    """aiosmtpd handler: one file per (recipient, message)."""

    directory: Path
    received: list[Path] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=policy.default)
        mid = _UNSAFE.sub("_", str(msg.get("Message-ID", "")).strip("<>")) or f"message-{len(self.received)}"
        self.directory.mkdir(parents=True, exist_ok=True)
        for rcpt in envelope.rcpt_tos:
            path = self.directory / f"{_UNSAFE.sub('_', rcpt)}--{mid}.eml"
            path.write_bytes(raw)
            self.received.append(path)
        return "250 Message accepted for delivery"


def start_sink(directory: str | Path, port: int | None = None) -> tuple[Controller, MailSink]:
    sink = MailSink(Path(directory))
    controller = Controller(sink, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    return controller, sink
