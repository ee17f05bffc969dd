"""``digest demo``: the whole day on the embedded defaults, with nothing configured and no network.

A real listing snapshot shipped in the package, a fresh SQLite file, three demo subscribers, a real SMTP
server on 127.0.0.1 that stores what it receives in ``./outbox/``, and the Prefect flow ``daily_digest``
run locally (no Prefect server needed). It lives with the flows because it runs one."""

from __future__ import annotations

import email
from dataclasses import dataclass
from datetime import date
from email import policy
from pathlib import Path

from digest import pipeline
from digest.config import Settings, use_settings
from digest.data import snapshot_path
from digest.mailsink import start_sink
from digest.pipeline import DaySummary
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from flows.daily import daily_digest

DEMO_DAY = date(2026, 8, 18)
DEMO_SUBSCRIBERS = [
    ("ada@example.org", "Ada", ["multimodal agents and tool use", "reinforcement learning for LLM reasoning"]),
    ("grace@example.org", "Grace", ["video generation with diffusion models", "3D scene generation"]),
    ("alan@example.org", "Alan", []),  # no interests: the trending papers, as HF's own email
]


@dataclass
class DemoResult:
    summary: DaySummary
    mails: list[Path]
    previews: list[Path]
    database: Path


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


def run_demo(workdir: str | Path = ".") -> DemoResult:
    work = Path(workdir).resolve()
    outbox = work / "outbox"
    db = work / "digest-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for old in outbox.glob("*.eml"):
        old.unlink()
    controller, sink = start_sink(outbox)
    settings = demo_settings(work, controller.port)
    try:
        engine = pipeline.open_store(settings)
        with session_factory(engine).begin() as session:
            for address, name, interests in DEMO_SUBSCRIBERS:
                add_subscriber(session, address, name=name, interests=interests, max_papers=8)
        with use_settings(settings):
            summary = daily_digest(day=DEMO_DAY, listing_file=str(snapshot_path()))
    finally:
        controller.stop()
    previews = []
    for path in sink.received:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = msg.get_body(("html",))
        if html is not None:
            preview = path.with_suffix(".html")
            preview.write_text(html.get_content(), encoding="utf-8")  # type: ignore[attr-defined]
            previews.append(preview)
    return DemoResult(summary, sink.received, previews, db)
