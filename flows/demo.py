"""``digest demo``: the whole day on the embedded defaults, with nothing configured and no network.

A real listing snapshot shipped in the package, a fresh SQLite file, three demo subscribers, a real SMTP
server on 127.0.0.1 that stores what it receives in ``./outbox/``, and the Prefect flow ``daily_digest``
run locally (no Prefect server needed)."""

from __future__ import annotations

import email
import os
from dataclasses import dataclass
from datetime import date
from email import policy
from pathlib import Path

from digest.data import snapshot_path
from digest.mailsink import start_sink

DEMO_DAY = date(2026, 8, 18)
DEMO_SUBSCRIBERS = [
    ("ada@example.org", "Ada", ["multimodal agents and tool use", "reinforcement learning for LLM reasoning"]),
    ("grace@example.org", "Grace", ["video generation with diffusion models", "3D scene generation"]),
    ("alan@example.org", "Alan", []),  # no interests: the trending papers, as HF's own email
]


@dataclass
class DemoResult:
    summary: object
    mails: list[Path]
    previews: list[Path]
    database: Path


def run_demo(workdir: str | Path = ".") -> DemoResult:
    work = Path(workdir).resolve()
    outbox = work / "outbox"
    db = work / "digest-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for old in outbox.glob("*.eml"):
        old.unlink()
    controller, sink = start_sink(outbox)
    env = {
        "DIGEST_DATABASE_URL": f"sqlite:///{db}",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(controller.port),
        "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_DEMO_SECRET_FALLBACK": "true",
        "DIGEST_OUTBOX_DIR": str(outbox),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from digest import pipeline
        from digest.config import Settings
        from digest.store import session_factory
        from digest.store.subscribers import add_subscriber
        from flows.daily import daily_digest

        engine = pipeline.open_store(Settings())
        with session_factory(engine).begin() as session:
            for address, name, interests in DEMO_SUBSCRIBERS:
                add_subscriber(session, address, name=name, interests=interests, max_papers=8)
        summary = daily_digest(day=DEMO_DAY, listing_file=str(snapshot_path()))
    finally:
        controller.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    previews = []
    for path in sink.received:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = msg.get_body(("html",))
        if html is not None:
            preview = path.with_suffix(".html")
            preview.write_text(html.get_content(), encoding="utf-8")  # type: ignore[attr-defined]
            previews.append(preview)
    return DemoResult(summary, sink.received, previews, db)
