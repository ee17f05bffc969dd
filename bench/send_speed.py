"""Outbox send throughput: plan N deliveries (real 2025-06-05 listing, 10 papers each) into a fresh SQLite
file and send them to a real SMTP server on 127.0.0.1 (aiosmtpd, the same sink as the demo), with 1 and 2
parallel connections. Prints mails/s against the baseline of bare smtplib on one reused connection
sending the same bytes (what the render + MIME + outbox bookkeeping costs on top).

    .venv/bin/python bench/send_speed.py [N]
"""

from __future__ import annotations

import smtplib
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest import pipeline  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.mailsink import start_sink  # noqa: E402
from digest.models import Pick  # noqa: E402
from digest.send import send_day  # noqa: E402
from digest.sources.huggingface import load_listing_file  # noqa: E402
from digest.store import session_factory  # noqa: E402
from digest.store import outbox  # noqa: E402
from digest.store.subscribers import add_subscriber  # noqa: E402

DAY = date(2025, 6, 5)
LISTING = ROOT / "tests" / "fixtures" / "hf" / "api_daily_papers_2025-06-05.collector.json"


def run(n: int, connections: int, tmp: Path, port: int) -> tuple[float, int]:
    s = Settings(database_url=f"sqlite:///{tmp / f'bench-{connections}.db'}", smtp_host="127.0.0.1",
                 smtp_port=port, smtp_security="none", smtp_connections=connections,
                 secret_key=SecretStr("bench"), send_batch_size=50, _env_file=None)  # type: ignore[call-arg]
    engine = pipeline.open_store(s)
    listing = load_listing_file(LISTING)
    pipeline.store(engine, listing)
    ids = [p.arxiv_id for p in listing.papers]
    with session_factory(engine).begin() as sess:
        subs = [add_subscriber(sess, f"r{i}@example.org", interests=["x"]).id for i in range(n)]
        outbox.plan_deliveries(sess, DAY, {sid: [Pick(ids[(sid + k) % len(ids)], k + 1, 1.0, "trending")
                                                 for k in range(10)] for sid in subs})
    t0 = time.perf_counter()
    report = send_day(engine, s, DAY)
    return time.perf_counter() - t0, report.sent


def bare_smtplib(n: int, port: int, raw: bytes) -> float:
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(n):
            conn.sendmail("digest@localhost", [f"r{i}@example.org"], raw)
    return time.perf_counter() - t0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        controller, sink = start_sink(tmp / "inbox")
        try:
            print(f"send {n} digests (10 papers each) to aiosmtpd on 127.0.0.1, writing .eml files")
            for c in (1, 2):
                secs, sent = run(n, c, tmp, controller.port)
                print(f"  outbox send, {c} connection(s): {secs:6.2f} s  {sent / secs:7.1f} mails/s  (sent {sent})")
            raw = sink.received[0].read_bytes()
            secs = bare_smtplib(n, controller.port, raw)
            print(f"  baseline: bare smtplib, same bytes, 1 connection: {secs:6.2f} s  {n / secs:7.1f} mails/s")
        finally:
            controller.stop()


if __name__ == "__main__":
    main()
