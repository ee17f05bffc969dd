"""What the tests build their cases from: the real fixtures in tests/fixtures, papers, picks, digest contexts,
settings, subscribers, planned deliveries, re-dated listings and the script of the local Hugging Face
stand-in (the ``hf_server`` fixture in conftest.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from digest import pipeline
from digest.config import Settings
from digest.models import Listing, Paper, Pick, Subscriber, SubscriberStatus
from digest.render import DigestContext, build_context
from digest.signing import LinkSigner
from digest.sources.huggingface import load_listing_file
from digest.store import create_db_engine, session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import SubscriberRow

from .smtp_server import SmtpTestServer

# -- the real data in the repository ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # copied from the project's shared fixtures, see its README.md
HF_FIXTURES = FIXTURES / "hf"
CORPUS = FIXTURES / "corpus" / "papers-a.jsonl"
API_2025_06_05 = HF_FIXTURES / "api_daily_papers_2025-06-05.collector.json"  # 30 papers
PAGE_2024_08_01 = HF_FIXTURES / "listing_2024-08-01.html"  # 13 papers, the 2024 page layout

# Every listing in HF_FIXTURES: file name -> (listing date, number of papers), checked against the files.
HF_LISTINGS = {
    "api_daily_papers_2024-03-12.raw.json": (date(2024, 3, 12), 9),
    "api_daily_papers_2024-03-21.raw.json": (date(2024, 3, 21), 18),
    "api_daily_papers_2024-05-27.collector.json": (date(2024, 5, 27), 13),
    "api_daily_papers_2025-06-05.collector.json": (date(2025, 6, 5), 30),
    "api_daily_papers_2025-06-20.collector.json": (date(2025, 6, 20), 2),
    "api_daily_papers_2025-10-03.collector.json": (date(2025, 10, 3), 39),
    "api_daily_papers_2026-08-18.collector.json": (date(2026, 8, 18), 29),
    "listing_2024-08-01.html": (date(2024, 8, 1), 13),
}

SECRET = "test-secret-0123456789abcdef"  # signs every link the tests make
LINK_KEY = "link-key-of-ada-0123456"  # the link key of a subscriber that is not stored

# -- papers, picks and a digest, without a store --------------------------------------------------------

DAY = date(2026, 8, 18)
LOREM = (
    "We study how large language models reason over long contexts and propose a retrieval-augmented "
    "method that improves accuracy on multi-hop question answering while reducing compute. "
)
HOSTILE_TITLE = '<script>alert(1)</script> "><img src=x onerror=alert(1)>'


def paper(i: int, **changes: Any) -> Paper:
    """Paper number ``i`` of ``DAY`` (fewer upvotes the higher ``i``), with ``changes`` to its fields."""
    base = Paper(
        arxiv_id=f"2408.{i:05d}",
        title=f"Paper number {i}: scaling things up",
        abstract=LOREM * 4,
        authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
        listing_date=DAY,
        upvotes=100 - i,
        github_url=f"https://github.com/example/repo{i}",
        project_url=f"https://example.org/p{i}",
    )
    return dataclasses.replace(base, **changes)


def pick(p: Paper, rank: int, reason: str = "interest: LLM reasoning") -> Pick:
    return Pick(arxiv_id=p.arxiv_id, rank=rank, score=1.0 / rank, reason=reason)


def bare_settings(**values: Any) -> Settings:
    """Settings from ``values`` and the defaults only: no environment file is read."""
    return Settings(_env_file=None, **values)


def make_context(papers: list[Paper], sub: Subscriber | None = None, settings: Settings | None = None) -> DigestContext:
    """The digest of ``papers`` in that order for ``sub`` (Ada, id 7) on ``DAY``."""
    settings = settings or bare_settings(public_url="https://digest.example")
    sub = sub or Subscriber(email="ada@example.org", name="Ada", id=7, link_key=LINK_KEY)
    signer = LinkSigner(SECRET, settings.public_url)
    return build_context(sub, DAY, [(p, pick(p, r)) for r, p in enumerate(papers, 1)], settings, signer)


def smtp_settings(port: int, base: Settings | None = None, **changes: Any) -> Settings:
    """``base`` (or the bare defaults) sending over plain SMTP to 127.0.0.1:``port``, 5 s timeout."""
    update: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
                              "smtp_timeout": 5.0, **changes}
    return (base or bare_settings()).model_copy(update=update)


# -- subscribers and planned deliveries in a store -------------------------------------------------------


def stored_id(sub: Subscriber) -> int:
    """The id of a subscriber that has been stored."""
    assert sub.id is not None, f"{sub.email} has no id: not stored"
    return sub.id


def add_reader(settings: Settings, email: str, status: str = "active", interests: Sequence[str] = ("robotics",)) -> int:
    """Store a subscriber directly (no confirmation mail); its id."""
    with session_factory(create_db_engine(settings.database_url)).begin() as session:
        return stored_id(add_subscriber(session, email, interests=interests, status=SubscriberStatus(status)))


def link_key(settings: Settings, subscriber_id: int) -> str:
    """The stored link key of a subscriber: what its signed links must carry."""
    with session_factory(create_db_engine(settings.database_url))() as session:
        row = session.get(SubscriberRow, subscriber_id)
    assert row is not None, f"no subscriber {subscriber_id}"
    return row.link_key


def subscriber_row(settings: Settings, email: str) -> SubscriberRow:
    """The one stored row of ``email``."""
    with session_factory(create_db_engine(settings.database_url))() as session:
        found = list(session.scalars(select(SubscriberRow).where(SubscriberRow.email == email)))
    assert len(found) == 1, f"{len(found)} rows for {email}"
    return found[0]


HOSTILE_LISTING_TITLE = '<script>alert(1)</script> Attention "><img src=x onerror=alert(1)> Is All You Need'


@dataclass(frozen=True)
class Readers:
    """Subscribers ``reader{i}@example.org`` on a store that holds the real 2025-06-05 listing."""

    engine: Engine
    emails: list[str]
    ids: list[int]
    paper_ids: list[str]
    picks: dict[int, list[Pick]]  # three papers each, in rank order; subscriber i gets papers i, i+1, i+2


def readers_with_picks(settings: Settings, n: int, hostile: bool = False) -> Readers:
    """Store the real 2025-06-05 listing (``hostile``: its first paper with a script in the title and
    markup in an author), add ``n`` subscribers and pick three papers each (no model needed); nothing is
    planned yet."""
    engine = pipeline.open_store(settings)
    listing = load_listing_file(API_2025_06_05)
    if hostile:
        first = dataclasses.replace(listing.papers[0], title=HOSTILE_LISTING_TITLE,
                                    authors=("<b>Mallory</b>", *listing.papers[0].authors[1:]))
        listing = Listing(listing.listing_date, (first, *listing.papers[1:]), listing.source)
    pipeline.store(engine, listing)
    paper_ids = [p.arxiv_id for p in listing.papers]
    emails = [f"reader{i}@example.org" for i in range(n)]
    with session_factory(engine).begin() as s:
        ids = [stored_id(add_subscriber(s, e, interests=["LLM reasoning"])) for e in emails]
    picks = {
        sid: [Pick(paper_ids[(k + i) % len(paper_ids)], k + 1, 0.9 - 0.1 * k, "interest: LLM reasoning")
              for k in range(3)]
        for i, sid in enumerate(ids)
    }
    return Readers(engine, emails, ids, paper_ids, picks)


def confirm_link(server: SmtpTestServer, email: str) -> str:
    """The confirm link of the last mail ``server`` received for ``email``, the same in text and HTML."""
    msg = server.by_rcpt()[email][-1].parse()
    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    text = text_part.get_content()
    m = re.search(r"(http\S+/confirm/\S+)", text)
    assert m, text
    assert m.group(1) in html_part.get_content()
    return m.group(1)


# -- the real `digest web` ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedWeb:
    """A running `digest web`: where it answers, and the files its stdout and stderr go to."""

    base: str
    stdout: Path
    stderr: Path

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


@contextmanager
def digest_web(workdir: Path, smtp_port: int, database_url: str, **env: str) -> Iterator[ServedWeb]:
    """`digest web` (the command itself: uvicorn with its own logging) in a subprocess on a free port of
    127.0.0.1, mailing through the SMTP test server on ``smtp_port``; ``env`` adds DIGEST_* settings."""
    from digest.mailsink import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environ.update({
        "DIGEST_DATABASE_URL": database_url, "DIGEST_SECRET_KEY": SECRET, "DIGEST_PUBLIC_URL": base,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp_port), "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_MAIL_FROM": "Papers Digest <digest@example.org>", "DIGEST_EMBED_INTERESTS_ON_WRITE": "false", **env,
    })
    out, err = workdir / "web.stdout", workdir / "web.stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "digest.cli", "web", "--port", str(port)], cwd=workdir,
                                env=environ, stdout=o, stderr=e)
    served = ServedWeb(base, out, err)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"digest web exited {proc.returncode}: {served.logs()}"
            assert time.monotonic() < deadline, f"digest web did not answer: {served.logs()}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- listings as Hugging Face serves them ------------------------------------------------------------------


def items_for(day: date, items: list[dict[str, Any]]) -> bytes:
    """Real listing items re-dated to ``day`` (listing date = submittedOnDailyAt), as an API body."""
    out = json.loads(json.dumps(items))
    for it in out:
        it["paper"]["submittedOnDailyAt"] = f"{day.isoformat()}T00:00:00.000Z"
    return json.dumps(out).encode()


Answer = tuple[int, dict[str, str], bytes]  # status, headers, body
Query = dict[str, list[str]]


@dataclass
class HfScript:
    """What the local Hugging Face stand-in answers, and what it was asked.

    ``answers[path]``: answers in order, the last one repeats (404 for a path without any); ``routes[path]``
    instead answers from the request's query; ``log``: (monotonic time, path, query, User-Agent) a request."""

    base: str
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    routes: dict[str, Callable[[Query], Answer]] = field(default_factory=dict)
    log: list[tuple[float, str, Query, str]] = field(default_factory=list)

    def answer(self, path: str, query: Query) -> Answer:
        if path in self.routes:
            return self.routes[path](query)
        queue = self.answers.get(path) or [(404, {}, b"not found")]
        return queue.pop(0) if len(queue) > 1 else queue[0]


# -- digests mailed for real, and the links they carry (the web archive) ----------------------------------


@dataclass(frozen=True)
class Mailed:
    """One subscriber's digests, planned and sent through a real SMTP server: ``papers[day]`` holds the
    arXiv ids of that day's digest in rank order."""

    engine: Engine
    subscriber_id: int
    email: str
    papers: dict[date, list[str]]


def mail_digests(settings: Settings, days: Sequence[date], email: str = "reader@example.org",
                 per_day: int = 3) -> Mailed:
    """Store the real 2025-06-05 listing, add ``email`` (active) and mail them, for each of ``days``, a
    digest of ``per_day`` papers (different papers each day, reasons naming an interest) over ``settings``'
    SMTP server; every digest must be accepted."""
    from digest.send import send_day
    from digest.store import outbox

    engine = pipeline.open_store(settings)
    listing = load_listing_file(API_2025_06_05)
    pipeline.store(engine, listing)
    ids = [p.arxiv_id for p in listing.papers]
    with session_factory(engine).begin() as s:
        sid = stored_id(add_subscriber(s, email, interests=["LLM reasoning", "robotics"]))
    papers: dict[date, list[str]] = {}
    for k, day in enumerate(days):
        chosen = [ids[(k * per_day + j) % len(ids)] for j in range(per_day)]
        reasons = ["interest: LLM reasoning", "interest: robotics", "trending"]
        picks = [Pick(a, j + 1, 0.9 - 0.1 * j, reasons[j % 3]) for j, a in enumerate(chosen)]
        with session_factory(engine).begin() as s:
            outbox.plan_deliveries(s, day, {sid: picks})
        report = send_day(engine, settings, day)
        assert (report.sent, report.failed) == (1, 0), report
        papers[day] = chosen
    return Mailed(engine, sid, email, papers)


def mailed_link(server: SmtpTestServer, email: str, path: str, index: int = -1) -> str:
    """The ``/{path}/{token}`` link of mail ``index`` that ``server`` received for ``email``, checked to be
    the same in the text and the HTML part."""
    msg = server.by_rcpt()[email][index].parse()
    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    m = re.search(rf"(http\S+/{path}/[A-Za-z0-9_-]+)", text_part.get_content())
    assert m, text_part.get_content()
    assert f'href="{m.group(1)}"' in html_part.get_content()
    return m.group(1)


def run_at_once(cmd: Sequence[str], env: dict[str, str], copies: int = 2,
                timeout: float = 600) -> list[subprocess.CompletedProcess[str]]:
    """``copies`` processes of ``cmd`` started together (from the repository root); each one's return code,
    stdout and stderr once all have ended. None is left running, whatever happens."""
    procs = [subprocess.Popen(list(cmd), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(copies)]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]
