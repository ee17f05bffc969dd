"""The whole day at 1k, 10k (and 100k) subscribers: import, embed interests, plan, send; against the bare
baselines measured in the same run (issue 12).

Subscribers have distinct interests built from the real paper titles of tests/fixtures/corpus (1-3 each:
a few words of one title, joined to a few words of another once the single windows run out), and the
day is one real listing (tests/fixtures/hf, 2025-10-03, 39 papers). Every stage runs in its own process
(``bench/day.py --stage ...``), so its peak RSS is its own (``wait4``), on a SQLite file in a temporary
folder (or ``--database-url``, e.g. a PostgreSQL database made for the purpose: its tables are dropped).
Mails go to a fast SMTP sink in its own process (bench/fast_sink.py), which also counts the connections.

Stages, each with seconds, peak RSS and its rate:
  import    `digest subscribers import --no-embed` of the CSV (subscriber_csv.import_subscribers)
  listing   store the listing, then the daily flow's embed step (pipeline.embed): its papers' vectors and
            its abstracts' sentences for the explanations (not a goal)
  embed     the interest vectors, cold (pipeline.embed_interests): what import does unless --no-embed
  plan      pipeline.plan with the interest and sentence caches warm (the daily case: the embed step ran,
            so even the first plan of the day encodes nothing); inside it, the ranking's own
            time against the bare matmul of the same shapes (every interest vector x the listing's
            vectors, float32, one product), timed in the same process
  send      send_day over DIGEST_SMTP_CONNECTIONS connections (default 1) to the sink
  baseline  the bare cost per mail: Jinja render of the product's templates (its sources, stylesheet
            inlined, no product caches) + smtplib send of each subscriber's own bytes over one connection,
            for up to --baseline-mails of the day's digests (their variables and bytes built beforehand)
plan, send and baseline repeat (--repeats, alternating; the day's outbox emptied in between) and the
medians and the median of the per-pair ratios are printed. Then the Prefect flow `digest run` runs the
day once more on the same store (cache warm, nothing planned yet) and its task runs are listed.

Goals on this machine (cache warm): 10k plan + send < 60 s, 100k < 6 min, peak RSS < 1.5 GB, send per mail
<= 1.5x the bare render + send.

    .venv/bin/python bench/day.py                       # 1k and 10k
    .venv/bin/python bench/day.py --sizes 100000 --repeats 1 --flow-sizes ''   # 100k once (~20 min)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LISTING = ROOT / "tests" / "fixtures" / "hf" / "api_daily_papers_2025-10-03.collector.json"
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers-a.jsonl"
DAY = date(2025, 10, 3)
SECRET = "bench-day-secret"


# -- the subscribers ----------------------------------------------------------------------------------------


def _windows(title: str, lo: int, hi: int) -> list[str]:
    words = [w.strip(":,;.()") for w in title.split()]
    words = [w for w in words if w]
    return [" ".join(words[i:i + k]) for k in range(lo, hi + 1) for i in range(0, max(len(words) - k + 1, 0))]


def write_subscribers(path: Path, n: int, seed: int = 12) -> int:
    """``n`` subscribers with 1-3 interests each, every interest text distinct; returns how many texts."""
    import numpy as np

    titles = [json.loads(line)["title"] for line in CORPUS.open(encoding="utf-8")]
    rng = np.random.default_rng(seed)
    single = list(dict.fromkeys(w for t in titles for w in _windows(t, 2, 4)))
    rng.shuffle(single)
    short = list(dict.fromkeys(w for t in titles for w in _windows(t, 1, 2)))
    seen: set[str] = set()
    texts = 0

    def phrase(i: int) -> str:
        if i < len(single):
            return single[i]
        while True:  # a window of one title and a word or two of another
            p = f"{single[int(rng.integers(len(single)))]} {short[int(rng.integers(len(short)))]}"
            if p not in seen:
                return p

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "interests", "max_papers"])
        for sid in range(n):
            mine = []
            for _ in range(int(rng.integers(1, 4))):
                p = phrase(texts)
                seen.add(p)
                mine.append(p)
                texts += 1
            w.writerow([f"reader{sid}@example.org", f"Reader {sid}", "; ".join(mine), 10])
    return texts


# -- the stages, each in its own process -----------------------------------------------------------------------


def settings_env(url: str, port: int, connections: int) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": url, "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(port),
        "DIGEST_SMTP_SECURITY": "none", "DIGEST_SMTP_CONNECTIONS": str(connections),
        "DIGEST_SECRET_KEY": SECRET, "DIGEST_PUBLIC_URL": "https://digest.example.org",
        "DIGEST_REFETCH_MAX_DAYS": "0", "DIGEST_LAG_DAYS": "0",
    }


def run_stage(name: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``--stage name`` in a child process; its JSON answer plus ``rss_mib`` (its own peak RSS) and
    ``wall`` (seconds, process start to exit)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | env
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--stage", name, *args], env=environ,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"stage {name} failed ({status}): {out[-2000:]}")
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    answer["rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    answer["wall"] = wall
    return answer


def stage(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from digest import pipeline
    from digest.config import get_settings

    s = get_settings()
    engine = pipeline.open_store(s)
    if name == "import":
        from digest.subscriber_csv import import_subscribers

        t = time.perf_counter()
        r = import_subscribers(engine, args.file)
        return {"secs": time.perf_counter() - t, "imported": r.imported, "invalid": len(r.invalid)}
    if name == "listing":
        t = time.perf_counter()
        pipeline.store(engine, pipeline.fetch(s, None, LISTING))
        stored = time.perf_counter()
        n = pipeline.embed(engine, s, pipeline.candidate_start(s, DAY), DAY)  # as flows/daily.py embed_papers
        return {"secs": time.perf_counter() - t, "embed_secs": time.perf_counter() - stored, "papers": n.papers,
                "sentences": n.sentences}
    if name == "embed":
        from digest.store import session_factory
        from digest.store.subscribers import iter_subscribers

        with session_factory(engine)() as session:
            texts = [t for sub in iter_subscribers(session) for t in sub.interests]
        t = time.perf_counter()
        n = pipeline.embed_interests(engine, s, texts)
        return {"secs": time.perf_counter() - t, "texts": n}
    if name == "reset":
        from sqlalchemy import delete, select

        from digest.store import session_factory
        from digest.store.tables import DeliveryItemRow, DeliveryRow

        with session_factory(engine).begin() as session:
            ids = select(DeliveryRow.id).where(DeliveryRow.digest_date == DAY)
            session.execute(delete(DeliveryItemRow).where(DeliveryItemRow.delivery_id.in_(ids)))
            session.execute(delete(DeliveryRow).where(DeliveryRow.digest_date == DAY))
        return {"secs": 0.0}
    if name == "plan":
        return plan_stage(engine, s)
    if name == "send":
        from digest.send import send_day

        t = time.perf_counter()
        r = send_day(engine, s, DAY)
        return {"secs": time.perf_counter() - t, "sent": r.sent, "failed": r.failed}
    if name == "baseline":
        return baseline_stage(engine, s, args.baseline_mails)
    if name == "flow":
        return flow_stage()
    raise SystemExit(f"unknown stage {name}")


def plan_stage(engine: Any, s: Any) -> dict[str, Any]:
    """pipeline.plan, with the time spent in rank_subscribers summed; then the bare matmul of the same
    shapes (all the interest vectors x the candidate papers' vectors), median of 3."""
    import numpy as np

    import digest.rank
    from digest import pipeline
    from digest.embed import Embedder, stored_paper_vectors
    from digest.store import session_factory
    from digest.store.embeddings import interest_vectors
    from digest.store.papers import papers_between
    from digest.store.subscribers import iter_subscribers

    ranked = [0.0]
    real = digest.rank.rank_subscribers

    def timed(*a: Any, **k: Any) -> Any:  # the ranking as shipped, with a stopwatch around it
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            ranked[0] += time.perf_counter() - t0

    digest.rank.rank_subscribers = timed  # type: ignore[assignment]
    t = time.perf_counter()
    result = pipeline.plan(engine, s, DAY)
    secs = time.perf_counter() - t
    digest.rank.rank_subscribers = real  # type: ignore[assignment]
    emb = Embedder.from_settings(s)
    with session_factory(engine)() as session:
        texts = [t for sub in iter_subscribers(session, None) for t in sub.interests]
        vecs = interest_vectors(session, emb.name, texts, emb.precision)
        papers = papers_between(session, pipeline.candidate_start(s, DAY), DAY)
        pv = stored_paper_vectors(session, emb, [p.arxiv_id for p in papers])
    Q = np.ascontiguousarray(np.stack([vecs[t] for t in texts]), dtype=np.float32)
    P = np.ascontiguousarray(np.stack(list(pv.values())), dtype=np.float32)
    del vecs, texts
    mm = []
    for _ in range(3):
        t0 = time.perf_counter()
        Q @ P.T
        mm.append(time.perf_counter() - t0)
    return {"secs": secs, "planned": result.planned, "skipped": result.skipped,
            "interests_embedded": result.interests_embedded, "sentences_embedded": result.sentences_embedded,
            "papers_embedded": result.embedded, "rank_secs": ranked[0],
            "matmul_secs": statistics.median(mm), "shape": [Q.shape[0], P.shape[0], Q.shape[1]]}


def baseline_stage(engine: Any, s: Any, limit: int) -> dict[str, Any]:
    """The bare render + send per mail for up to ``limit`` of the day's planned digests (as in
    bench/send_speed.py): their template variables and bytes are built first, untimed."""
    import smtplib

    from send_speed import bare_templates
    from sqlalchemy import select

    from digest.mail import ListHeaders, build_mail, message_id
    from digest.render import SUMMARY_CHARS, _vars, build_context, render_digest
    from digest.signing import LinkSigner
    from digest.store import outbox, session_factory
    from digest.store.papers import papers_by_ids
    from digest.store.subscribers import subscribers_by_ids
    from digest.store.tables import DeliveryRow

    signer = LinkSigner.from_settings(s)
    with session_factory(engine)() as session:
        rows = session.execute(select(DeliveryRow.id, DeliveryRow.subscriber_id)
                               .where(DeliveryRow.digest_date == DAY, DeliveryRow.status != "skipped")
                               .order_by(DeliveryRow.id).limit(limit)).all()
        items = outbox.items_of_many(session, [d for d, _ in rows])
        subs = {x.id: x for x in subscribers_by_ids(session, [sid for _, sid in rows])}
        papers = papers_by_ids(session, {p.arxiv_id for picks in items.values() for p in picks})
    work = []
    for delivery_id, sid in rows:
        sub = subs[sid]
        ctx = build_context(sub, DAY, [(papers[p.arxiv_id], p) for p in items[delivery_id]], s, signer)
        raw = build_mail(render_digest(ctx), to_addr=sub.email, to_name=sub.name, from_addr=s.mail_from,
                         message_id=message_id(sid, DAY, s.message_id_domain),
                         list_headers=ListHeaders(s.list_id, ctx.unsubscribe_url)).data
        work.append((_vars(ctx, ctx.items, SUMMARY_CHARS), sub.email, raw))
    html_t, text_t = bare_templates()
    t = time.perf_counter()
    with smtplib.SMTP(s.smtp_host, s.smtp_port) as conn:
        for v, rcpt, raw in work:
            html_t.render(v)
            text_t.render(v)
            conn.sendmail("digest@localhost", [rcpt], raw)
    secs = time.perf_counter() - t
    return {"secs": secs, "mails": len(work), "ms_per_mail": secs * 1000 / max(len(work), 1)}


def flow_stage() -> dict[str, Any]:
    """`digest run` on the saved listing (the daily-digest flow on our own Prefect server), then its task
    runs read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.daily import daily_digest
    from flows.prefect_api import prefect_api

    with prefect_api(scheduler=False):
        t = time.perf_counter()
        state = daily_digest(day=DAY, listing_file=str(LISTING), return_state=True)
        secs = time.perf_counter() - t
        summary = state.result()
        run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    tasks = sorted(((r.start_time.timestamp() if r.start_time else 0.0, r.name,
                     r.total_run_time.total_seconds(), r.state_name or "") for r in runs))
    return {"secs": secs, "state": state.name, "tasks": [[n, round(d, 2), st] for _, n, d, st in tasks],
            "summary": {k: v for k, v in summary.__dict__.items() if k != "day"}}


# -- the driver ------------------------------------------------------------------------------------------------


def reset_database(url: str) -> None:
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()


def fmt(r: dict[str, Any], rate: str | None = None, n: int = 0) -> str:
    per = f" {n / r['secs']:>9,.0f} {rate}/s" if rate and r["secs"] > 0 else ""
    return f"{r['secs']:8.2f} s  peak RSS {r['rss_mib']:6.0f} MiB{per}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="1000,10000", help="subscriber counts (default 1000,10000; add 100000)")
    ap.add_argument("--repeats", type=int, default=3, help="plan + send + baseline repeats (alternating)")
    ap.add_argument("--connections", type=int, default=1, help="DIGEST_SMTP_CONNECTIONS of the send")
    ap.add_argument("--baseline-mails", type=int, default=2000, help="mails of the bare baseline per repeat")
    ap.add_argument("--flow-sizes", default="1000,10000", help="sizes that also run `digest run` ('' none)")
    ap.add_argument("--database-url", default=None, help="a database made for the purpose (default: SQLite "
                    "files in a temporary folder); its tables are dropped")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args)))
        return

    from fast_sink import running_sink, sink_stats

    sizes = [int(x) for x in args.sizes.split(",") if x]
    flow_sizes = {int(x) for x in args.flow_sizes.split(",") if x}
    print(f"bench/day.py: listing {LISTING.name}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
          f"{args.repeats} repeats of plan + send + baseline; send over {args.connections} connection(s)")
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d, running_sink() as (port, _):
        tmp = Path(d)
        for n in sizes:
            url = args.database_url or f"sqlite:///{tmp / f'day-{n}.db'}"
            reset_database(url)
            env = settings_env(url, port, args.connections) | {"PREFECT_HOME": str(tmp / "prefect"),
                                                               "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                                                               "PREFECT_LOGGING_LEVEL": "WARNING"}
            path = tmp / f"subscribers-{n}.csv"
            texts = write_subscribers(path, n)
            print(f"\n== {n:,} subscribers, {texts:,} distinct interest texts ({url.split(':')[0]})")
            imp = run_stage("import", env, "--file", str(path))
            print(f"  import    {fmt(imp, 'subscribers', imp['imported'])}")
            lst = run_stage("listing", env)
            print(f"  listing   {fmt(lst)}  (embed step {lst['embed_secs']:.2f} s: {lst['papers']} papers, "
                  f"{lst['sentences']} sentences embedded)")
            emb = run_stage("embed", env)
            print(f"  embed     {fmt(emb, 'texts', emb['texts'])}  (interests, cold cache)")
            plans, sends, bases, ratios, mm = [], [], [], [], []
            for r in range(args.repeats):
                run_stage("reset", env)
                plan = run_stage("plan", env)
                before = sink_stats(port)[1]
                send = run_stage("send", env)
                opened = sink_stats(port)[1] - before - 1
                base = run_stage("baseline", env)
                sent = send["sent"]
                per_mail = send["secs"] * 1000 / max(sent, 1)
                ratios.append(per_mail / base["ms_per_mail"])
                plans.append(plan)
                sends.append(send)
                bases.append(base)
                mm.append(plan["rank_secs"] / plan["matmul_secs"])
                print(f"  run {r + 1}: plan {fmt(plan, 'subscribers', n)} (embedded: interests "
                      f"{plan['interests_embedded']}, papers {plan['papers_embedded']}, sentences "
                      f"{plan['sentences_embedded']}; ranking {plan['rank_secs']:.2f} s vs bare matmul "
                      f"{plan['matmul_secs']:.3f} s {tuple(plan['shape'])}: {mm[-1]:.1f}x)")
                print(f"         send {fmt(send, 'mails', sent)} ({sent} sent, {opened} connections) | bare "
                      f"render + smtplib {base['ms_per_mail']:.3f} ms/mail vs {per_mail:.3f}: {ratios[-1]:.2f}x")
                if opened != args.connections:
                    raise SystemExit(f"the send opened {opened} SMTP connections, not {args.connections}")
            med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
            res = {"import": imp, "listing": lst, "embed": emb, "plan": med(plans, "secs"),
                   "first_plan": plans[0]["secs"], "send": med(sends, "secs"),
                   "rss": max(x["rss_mib"] for x in [imp, lst, emb, *plans, *sends]),
                   "ratio": statistics.median(ratios), "rank_ratio": statistics.median(mm),
                   "sent": sends[-1]["sent"]}
            results[n] = res
            print(f"  first plan of the day {res['first_plan']:.2f} s (run 1), median plan {res['plan']:.2f} s")
            print(f"  median: plan {res['plan']:.2f} s + send {res['send']:.2f} s = {res['plan'] + res['send']:.2f} s;"
                  f" send/bare {res['ratio']:.2f}x; ranking/matmul {res['rank_ratio']:.1f}x; peak RSS of any "
                  f"stage {res['rss']:.0f} MiB")
            if n in flow_sizes:
                run_stage("reset", env)
                flow = run_stage("flow", env)
                print(f"  digest run (Prefect flow daily-digest, cache warm): {flow['secs']:.1f} s in the flow "
                      f"({flow['wall']:.1f} s with the server's start), state {flow['state']}, "
                      f"peak RSS {flow['rss_mib']:.0f} MiB")
                for name, secs, st in flow["tasks"]:
                    print(f"    task {name:<28} {secs:8.2f} s  {st}")
                print("    summary: " + ", ".join(f"{k} {v}" for k, v in flow["summary"].items()))
    print("\n| subscribers | import s | listing + embed step s | embed interests s | first plan s | plan s | "
          "send s | plan + send s | mails/s | send / bare | ranking / matmul | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, r in results.items():
        print(f"| {n:,} | {r['import']['secs']:.1f} | {r['listing']['secs']:.1f} | {r['embed']['secs']:.1f} | "
              f"{r['first_plan']:.1f} | {r['plan']:.1f} | {r['send']:.1f} | "
              f"{r['plan'] + r['send']:.1f} | {r['sent'] / r['send']:.0f} | {r['ratio']:.2f}x | "
              f"{r['rank_ratio']:.1f}x | {r['rss']:.0f} |")
    goals = {10_000: 60.0, 100_000: 360.0}
    for n, limit in goals.items():
        if n in results:
            total = results[n]["plan"] + results[n]["send"]
            print(f"goal {n:,}: plan + send {total:.1f} s < {limit:.0f} s: {'met' if total < limit else 'NOT met'}")
    if results:
        rss = max(r["rss"] for r in results.values())
        ratio = max(r["ratio"] for r in results.values())
        print(f"goal peak RSS {rss:.0f} MiB < 1536 MiB: {'met' if rss < 1536 else 'NOT met'}; "
              f"send per mail {ratio:.2f}x <= 1.5x the bare render + send: {'met' if ratio <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
