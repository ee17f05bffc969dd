"""Shared builders for the email tests: papers, picks, a digest context, a real aiosmtpd server."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import Settings
from digest.mailsink import free_port
from digest.models import Paper, Pick, Subscriber
from digest.render import DigestContext, build_context
from digest.signing import LinkSigner

SECRET = "test-secret-0123456789abcdef"
DAY = date(2026, 8, 18)
LOREM = (
    "We study how large language models reason over long contexts and propose a retrieval-augmented "
    "method that improves accuracy on multi-hop question answering while reducing compute. "
)


def paper(i: int, **kw: object) -> Paper:
    base: dict[str, object] = dict(
        arxiv_id=f"2408.{i:05d}",
        title=f"Paper number {i}: scaling things up",
        abstract=LOREM * 4,
        authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
        listing_date=DAY,
        upvotes=100 - i,
        github_url=f"https://github.com/example/repo{i}",
        project_url=f"https://example.org/p{i}",
    )
    base.update(kw)
    return Paper(**base)  # type: ignore[arg-type]


def pick(p: Paper, rank: int, reason: str = "interest: LLM reasoning") -> Pick:
    return Pick(arxiv_id=p.arxiv_id, rank=rank, score=1.0 / rank, reason=reason)


def make_context(papers: list[Paper], sub: Subscriber | None = None, settings: Settings | None = None) -> DigestContext:
    settings = settings or Settings(_env_file=None, public_url="https://digest.example")  # type: ignore[call-arg]
    sub = sub or Subscriber(email="ada@example.org", name="Ada", id=7)
    signer = LinkSigner(SECRET, settings.public_url)
    return build_context(sub, DAY, [(p, pick(p, r)) for r, p in enumerate(papers, 1)], settings, signer)


@dataclass
class Handler:
    """Stores envelopes; replies by recipient local part: ``later@`` 451 on RCPT, ``bad@`` 550 on RCPT,
    ``full@`` 452 on DATA, ``reject@`` 554 on DATA. ``drop_on_mail`` / ``drop_on_data`` close the
    connection at that point (once)."""

    envelopes: list[Envelope] = field(default_factory=list)
    drop_on_mail: int = 0
    drop_on_data: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if self.drop_on_mail:
            self.drop_on_mail -= 1
            server.transport.close()
            return "421 4.3.2 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        local = address.split("@")[0]
        if local == "later":
            return "451 4.3.0 try again later"
        if local == "bad":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        local = envelope.rcpt_tos[0].split("@")[0]
        if self.drop_on_data:
            self.drop_on_data -= 1
            server.transport.close()
            return "421 4.3.2 closing"
        if local == "full":
            return "452 4.2.2 mailbox full"
        if local == "reject":
            return "554 5.7.1 message rejected as spam"
        with self.lock:
            self.envelopes.append(envelope)
        return "250 OK"


class CountingController(Controller):
    """A Controller that counts the SMTP sessions (connections) it serves."""

    def __init__(self, handler: Handler, port: int) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port)
        self.connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        return SMTP(self.handler, hostname="test.localhost")
