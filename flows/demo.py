"""``digest demo``: the whole day on the embedded defaults, with nothing configured and no network.

A real listing snapshot shipped in the package, a fresh SQLite file, three demo subscribers, a real SMTP
server on 127.0.0.1 that stores what it receives in ``./outbox/``, and the Prefect flow ``daily_digest``
run locally (Prefect: our own temporary server, see ``flows/prefect_api.py``). It lives with the flows
because it runs one. ``DemoResult`` carries what the command shows to teach the product: who the demo
subscribers are, what they asked for, their top picks and why, and the next steps."""

from __future__ import annotations

import email
from dataclasses import dataclass
from datetime import date
from email import policy
from pathlib import Path

from sqlalchemy import select

from digest import pipeline
from digest.config import Settings, use_settings
from digest.data import snapshot_path
from digest.mailsink import start_sink
from digest.pipeline import DaySummary
from digest.store import session_factory
from digest.store.outbox import items_of
from digest.store.papers import papers_by_ids
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryRow, SubscriberRow
from flows.daily import daily_digest
from flows.prefect_api import prefect_api

DEMO_DAY = date(2026, 8, 18)
DEMO_SUBSCRIBERS = [
    ("ada@example.org", "Ada", ["multimodal agents and tool use", "reinforcement learning for LLM reasoning"]),
    ("grace@example.org", "Grace", ["video generation with diffusion models", "3D scene generation"]),
    ("alan@example.org", "Alan", []),  # no interests: the trending papers, as HF's own email
]
TOP = 3  # picks shown per demo subscriber


@dataclass(frozen=True)
class DemoReader:
    """One demo subscriber as the command presents them: what they asked for and what they got."""

    email: str
    name: str
    interests: tuple[str, ...]
    picks: list[tuple[str, str]]  # (title, why it was picked), in the mail's order
    papers: int  # how many papers their mail holds
    preview: Path | None  # the HTML copy of their mail


@dataclass
class DemoResult:
    summary: DaySummary
    mails: list[Path]
    previews: list[Path]
    database: Path
    readers: list[DemoReader]
    listing: Path  # the snapshot the demo replays
    day: date = DEMO_DAY


def demo_settings(work: Path, smtp_port: int) -> Settings:
    """The demo's configuration, passed explicitly (never by editing ``os.environ``): its own database,
    the local SMTP server, the public demo key; no ``.env`` file is read."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only argument
        database_url=f"sqlite:///{work / 'digest-demo.db'}",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security="none",
        demo_secret_fallback=True,
        outbox_dir=str(work / "outbox"),
    )


def _readers(settings: Settings, previews: dict[str, Path]) -> list[DemoReader]:
    engine = pipeline.open_store(settings)
    readers = []
    with session_factory(engine)() as session:
        for address, name, interests in DEMO_SUBSCRIBERS:
            delivery = session.scalar(
                select(DeliveryRow.id).join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
                .where(SubscriberRow.email == address, DeliveryRow.digest_date == DEMO_DAY,
                       DeliveryRow.kind == "digest")
            )
            picks = items_of(session, delivery) if delivery is not None else []
            papers = papers_by_ids(session, (p.arxiv_id for p in picks[:TOP]))
            readers.append(DemoReader(
                address, name, tuple(interests),
                [(papers[p.arxiv_id].title, p.reason) for p in picks[:TOP] if p.arxiv_id in papers],
                len(picks), previews.get(address),
            ))
    return readers


def run_demo(workdir: str | Path = ".") -> DemoResult:
    work = Path(workdir).resolve()
    outbox = work / "outbox"
    db = work / "digest-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for old in [*outbox.glob("*.eml"), *outbox.glob("*.html")]:
        old.unlink()
    controller, sink = start_sink(outbox)
    settings = demo_settings(work, controller.port)
    try:
        engine = pipeline.open_store(settings)
        with session_factory(engine).begin() as session:
            for address, name, interests in DEMO_SUBSCRIBERS:
                add_subscriber(session, address, name=name, interests=interests, max_papers=8)
        with use_settings(settings), prefect_api(scheduler=False):
            summary = daily_digest(day=DEMO_DAY, listing_file=str(snapshot_path()))
    finally:
        controller.stop()
    previews: dict[str, Path] = {}
    for path in sink.received:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = msg.get_body(("html",))
        if html is not None:
            preview = path.with_suffix(".html")
            preview.write_text(html.get_content(), encoding="utf-8")  # type: ignore[attr-defined]
            previews[path.name.split("--")[0]] = preview
    return DemoResult(summary, sink.received, list(previews.values()), db, _readers(settings, previews),
                      snapshot_path())
