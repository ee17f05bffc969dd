"""Send path against the bare cost: per mail, what ``send_day`` costs next to rendering the same templates
with Jinja and sending the same bytes with smtplib over one connection.

Both talk to a fast SMTP sink in its own process (bench/fast_sink.py: 250 to everything, DATA read to the
dot), so the sender is what is measured. The product run sends N planned digests (10 papers each, the
real 2025-06-05 listing) from a fresh copy of one prepared SQLite file. The baseline is the floor of the
same work done bare: for each of the N subscribers, render the HTML and text templates the product renders
(the same sources, stylesheet already inlined, in a plain Jinja environment without the product's caches;
the template variables built beforehand: no signing, no store, no MIME) and send that subscriber's own
message bytes (built beforehand by the product) with ``smtplib.sendmail`` over one connection. Product and
baseline alternate, repeated; the medians and the median of the per-pair ratios are printed (goal:
product <= 1.5x baseline per mail). ``--connections C`` runs the product with C connections and checks
with the sink that it opened exactly C.

    .venv/bin/python bench/send_speed.py [N] [--repeats R] [--connections C] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FunctionLoader, Template
from pydantic import SecretStr
from sqlalchemy import event, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fast_sink import running_sink, sink_stats  # noqa: E402

from digest import pipeline  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.mail import ListHeaders, build_mail, message_id  # noqa: E402
from digest.models import Pick  # noqa: E402
from digest.render import SUMMARY_CHARS, _vars, _wrap, build_context, environment, render_digest  # noqa: E402
from digest.send import send_day  # noqa: E402
from digest.signing import LinkSigner  # noqa: E402
from digest.sources.huggingface import load_listing_file  # noqa: E402
from digest.store import outbox, session_factory  # noqa: E402
from digest.store.papers import papers_by_ids  # noqa: E402
from digest.store.subscribers import add_subscriber, find_subscriber  # noqa: E402
from digest.store.tables import DeliveryRow  # noqa: E402

DAY = date(2025, 6, 5)
LISTING = ROOT / "tests" / "fixtures" / "hf" / "api_daily_papers_2025-06-05.collector.json"
PAPERS_PER_MAIL = 10
SYNCHRONOUS: str | None = None  # --synchronous


# Profile entries summed into the shares printed with --profile: (file suffix, function name).
SHARES = {
    "signed links (digest/signing.py LinkSigner.digest_links)": ("digest/signing.py", "digest_links"),
    "Jinja render, HTML + text (render._render)": ("digest/render.py", "_render"),
    "template variables and cards (render._vars)": ("digest/render.py", "_vars"),
    "MIME bytes (mail.message.build_mail)": ("digest/mail/message.py", "build_mail"),
    "SMTP (SmtpTransport.send)": ("digest/mail/transports.py", "send"),
    "store: claims (outbox.claim_batch)": ("digest/store/outbox.py", "claim_batch"),
    "store: items + papers of a batch (outbox.items_of_many)": ("digest/store/outbox.py", "items_of_many"),
    "store: record sent (outbox.mark_sent)": ("digest/store/outbox.py", "mark_sent"),
    "store: commits (sqlite3 commit)": ("~", "<method 'commit' of 'sqlite3.Connection' objects>"),
}


def settings_for(db: Path, port: int, connections: int) -> Settings:
    return Settings(database_url=f"sqlite:///{db}", smtp_host="127.0.0.1", smtp_port=port,  # type: ignore[call-arg]
                    smtp_security="none", smtp_connections=connections, secret_key=SecretStr("bench"),
                    public_url="https://digest.example.org", _env_file=None)


def prepare(db: Path, n: int) -> None:
    """The listing, ``n`` subscribers and their planned digests (10 papers each) in a fresh SQLite file."""
    s = settings_for(db, 0, 1)
    engine = pipeline.open_store(s)
    listing = load_listing_file(LISTING)
    pipeline.store(engine, listing)
    ids = [p.arxiv_id for p in listing.papers]
    with session_factory(engine).begin() as sess:
        subs = [add_subscriber(sess, f"reader{i}@example.org", name=f"Reader {i}", interests=["x"]).id
                for i in range(n)]
        picks = {sid: [Pick(ids[(sid + k) % len(ids)], k + 1, 0.9 - k / 100, "interest: LLM reasoning")
                       for k in range(PAPERS_PER_MAIL)] for sid in subs if sid is not None}
        outbox.plan_deliveries(sess, DAY, picks)
    engine.dispose()


def product(template_db: Path, tmp: Path, port: int, connections: int, run: int,
            profile: cProfile.Profile | None = None) -> tuple[float, int]:
    """Seconds to send every planned digest of a fresh copy of the prepared store, and how many were sent."""
    db = tmp / f"product-{run}.db"
    shutil.copyfile(template_db, db)
    s = settings_for(db, port, connections)
    engine = pipeline.open_store(s, migrate=False)
    if SYNCHRONOUS:
        event.listen(engine, "connect", lambda conn, _: conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}"))
        engine.dispose()
    t0 = time.perf_counter()
    if profile is not None:
        profile.enable()
    report = send_day(engine, s, DAY)
    if profile is not None:
        profile.disable()
    secs = time.perf_counter() - t0
    engine.dispose()
    return secs, report.sent


def baseline_inputs(template_db: Path, n: int) -> tuple[list[dict[str, Any]], list[str], list[bytes]]:
    """Per subscriber, the template variables of their digest, their address and their message's bytes as
    the product builds them (all prepared beforehand, not timed)."""
    s = settings_for(template_db, 0, 1)
    engine = pipeline.open_store(s, migrate=False)
    signer = LinkSigner.from_settings(s)
    all_vars: list[dict[str, Any]] = []
    rcpts: list[str] = []
    raws: list[bytes] = []
    with session_factory(engine)() as sess:
        rows = sess.execute(select(DeliveryRow.id, DeliveryRow.subscriber_id).order_by(DeliveryRow.id)).all()[:n]
        items = outbox.items_of_many(sess, [d for d, _ in rows])
        papers = papers_by_ids(sess, {p.arxiv_id for picks in items.values() for p in picks})
        for delivery_id, sid in rows:
            sub = find_subscriber(sess, sid)
            assert sub is not None
            picks = items[delivery_id]
            ctx = build_context(sub, DAY, [(papers[p.arxiv_id], p) for p in picks], s, signer)
            all_vars.append(_vars(ctx, ctx.items, SUMMARY_CHARS))
            rcpts.append(sub.email)
            raws.append(build_mail(render_digest(ctx), to_addr=sub.email, to_name=sub.name, from_addr=s.mail_from,
                                   message_id=message_id(sid, DAY, s.message_id_domain),
                                   list_headers=ListHeaders(s.list_id, ctx.unsubscribe_url)).data)
    engine.dispose()
    return all_vars, rcpts, raws


def bare_templates() -> tuple[Template, Template]:
    """The product's digest templates (HTML with its stylesheet inlined, as the product renders it) in a
    plain Jinja environment: the same sources and options, none of the product's caches."""
    product = environment()
    assert product.loader is not None
    env = Environment(loader=FunctionLoader(lambda name: product.loader.get_source(product, name)[0]),  # type: ignore[union-attr]
                      autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, auto_reload=False)
    env.filters["wrap"] = getattr(_wrap, "__wrapped__", _wrap)  # the plain filter: a cache is the product's
    return env.get_template("digest.html.j2"), env.get_template("digest.txt.j2")


def baseline(port: int, all_vars: list[dict[str, Any]], rcpts: list[str], raws: list[bytes]) -> float:
    """Seconds for the bare cost: Jinja HTML + text render of each digest, and smtplib's send of each
    subscriber's bytes over one connection."""
    html_t, text_t = bare_templates()
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for v, rcpt, raw in zip(all_vars, rcpts, raws):
            html_t.render(v)
            text_t.render(v)
            conn.sendmail("digest@localhost", [rcpt], raw)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1000, help="digests per run (default 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--connections", type=int, default=1, help="DIGEST_SMTP_CONNECTIONS of the product run")
    ap.add_argument("--profile", action="store_true", help="also profile one product run (cProfile, top 25)")
    ap.add_argument("--synchronous", choices=["FULL", "NORMAL"], default=None,
                    help="SQLite PRAGMA synchronous for the product run (default: the store's, FULL in WAL)")
    args = ap.parse_args()
    global SYNCHRONOUS
    SYNCHRONOUS = args.synchronous
    n = args.n
    with tempfile.TemporaryDirectory() as d, running_sink() as (port, sink):
        tmp = Path(d)
        template_db = tmp / "template.db"
        prepare(template_db, n)
        all_vars, rcpts, raws = baseline_inputs(template_db, n)
        size = statistics.mean(map(len, raws)) / 1024
        print(f"send {n} digests ({PAPERS_PER_MAIL} papers, {size:.1f} KiB each) to a fast sink in its own "
              f"process; product with {args.connections} connection(s), {args.repeats} alternating repeats"
              + (f", SQLite synchronous={SYNCHRONOUS}" if SYNCHRONOUS else ""))
        prod_ms: list[float] = []
        base_ms: list[float] = []
        ratios: list[float] = []
        for r in range(args.repeats):
            before = sink_stats(port)[1]
            secs, sent = product(template_db, tmp, port, args.connections, r)
            opened = sink_stats(port)[1] - before - 1  # the count query's own connection
            if sent != n:
                raise SystemExit(f"product run {r} sent {sent} of {n}")
            if opened != args.connections:
                raise SystemExit(f"product run {r} opened {opened} SMTP connections, not {args.connections}")
            prod_ms.append(secs * 1000 / n)
            bsecs = baseline(port, all_vars, rcpts, raws)
            base_ms.append(bsecs * 1000 / n)
            ratios.append(prod_ms[-1] / base_ms[-1])
            print(f"  run {r + 1}: product {secs:6.2f} s {n / secs:7.1f} mails/s {prod_ms[-1]:6.3f} ms/mail "
                  f"({opened} connections) | baseline {bsecs:6.2f} s {n / bsecs:7.1f} mails/s {base_ms[-1]:6.3f} "
                  f"ms/mail | ratio {ratios[-1]:.2f}x")
        p, b = statistics.median(prod_ms), statistics.median(base_ms)
        print(f"median per mail: product {p:.3f} ms ({1000 / p:.0f} mails/s), baseline (bare Jinja render + "
              f"smtplib) {b:.3f} ms ({1000 / b:.0f} mails/s); median ratio {statistics.median(ratios):.2f}x "
              f"(goal <= 1.5x)")
        if args.profile:
            prof = cProfile.Profile()
            product(template_db, tmp, port, args.connections, args.repeats, profile=prof)
            stats = pstats.Stats(prof)
            total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
            print("--- where one product run spends its time (cumulative, share of send_day) ---")
            for label, (path, func) in SHARES.items():
                cum = sum(v[3] for (f, _, fn), v in stats.stats.items()  # type: ignore[attr-defined]
                          if f.endswith(path) and fn == func)
                print(f"  {label:<52} {cum * 1000 / n:6.3f} ms/mail {100 * cum / total:5.1f}%")
            for key in ("tottime", "cumulative"):
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(25)
                print(f"--- profile of one product run, top 25 by {key} ---")
                print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main()
