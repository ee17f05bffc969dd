"""The daily flow's send step on a Dask cluster: mails/s with 1 and with 2 Dask worker processes.

What is timed is the product's send step (``flows.daily.send_planned``) inside a Prefect flow run whose task
runner is the product's ``ConfiguredTaskRunner`` with ``task_runner=dask`` on a local cluster of W worker
processes (one thread each): it cuts the day's N planned digests (10 papers each, the real 2025-06-05
listing, from a fresh copy of one prepared SQLite file) into bounded slices, one task each, and the workers
send them over one SMTP connection each to a fast sink in its own process (bench/fast_sink.py). The two
clusters are started (and their workers warmed: the project imported) before any timing; the runs with 1
and 2 workers alternate, repeated, with a run of the thread runner (the flow's own process, one
connection) as the reference; the medians and the median of the per-repeat ratios are printed.
The Prefect API is the product's own (``flows.prefect_api``: ``PREFECT_API_URL``, or a server it starts).

    .venv/bin/python bench/dask_send.py [N] [--repeats R]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

DAY = date(2025, 6, 5)


def warm() -> int:
    """Run on each worker before timing: import what the send tasks import."""
    import flows.daily  # noqa: F401

    return os.getpid()


def main() -> None:
    from distributed import Client, LocalCluster
    from prefect import flow

    from digest.config import Settings
    from fast_sink import running_sink
    from flows.daily import send_planned
    from flows.prefect_api import prefect_api
    from flows.runners import ConfiguredTaskRunner
    from send_speed import prepare, settings_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=3000, help="digests per run (default 3000)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = args.n

    @flow(name="bench-dask-send")
    def send_step(run: int) -> tuple[float, int, int]:
        """The timed send step, on the settings of the run (``CURRENT``); ``run`` names the flow run."""
        t0 = time.perf_counter()
        reports, processes = send_planned(CURRENT[0], DAY)
        return time.perf_counter() - t0, sum(r.sent for r in reports), processes

    CURRENT: list[Settings] = []
    with tempfile.TemporaryDirectory() as d, running_sink() as (port, _sink), prefect_api(scheduler=False):
        tmp = Path(d)
        template = tmp / "template.db"
        prepare(template, n)
        clusters = {w: LocalCluster(n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=":0", silence_logs=logging.ERROR) for w in (1, 2)}
        try:
            for w, cluster in clusters.items():
                with Client(cluster) as client:
                    pids = client.run(warm)
                print(f"cluster of {w} worker(s) at {cluster.scheduler_address}, worker pids {sorted(pids.values())}")
            print(f"send {n} digests (10 papers each) per run to a fast sink in its own process (port {port}); "
                  f"the daily flow's send step on Dask, 1 SMTP connection per worker; {args.repeats} alternating "
                  f"repeats; {os.cpu_count()} cores")
            rates: dict[int, list[float]] = {0: [], 1: [], 2: []}
            ratios: list[float] = []
            run = 0
            for r in range(args.repeats):
                for w in (0, 1, 2):  # 0: the thread runner, the flow's own process (the reference)
                    db = tmp / f"run-{run}.db"
                    shutil.copyfile(template, db)
                    s = settings_for(db, port, max(w, 1))
                    if w:
                        s = s.model_copy(update={"task_runner": "dask", "dask_address": clusters[w].scheduler_address})
                    CURRENT[:] = [s]
                    secs, sent, processes = send_step.with_options(task_runner=ConfiguredTaskRunner(s))(run)
                    run += 1
                    if sent != n:
                        raise SystemExit(f"run {run} with {w} worker(s) sent {sent} of {n}")
                    rates[w].append(n / secs)
                    where = f"dask, {w} worker(s)" if w else "thread runner, in the flow's process"
                    print(f"  repeat {r + 1}, {where:<38}: {secs:6.2f} s {n / secs:7.1f} mails/s "
                          f"(send tasks ran in {processes} process(es))")
                ratios.append(rates[2][-1] / rates[1][-1])
            m0, m1, m2 = (statistics.median(rates[w]) for w in (0, 1, 2))
            print(f"median: thread runner {m0:.0f} mails/s; dask: 1 worker {m1:.0f} mails/s, 2 workers {m2:.0f} mails/s; "
                  f"2 workers / 1 worker: median ratio {statistics.median(ratios):.2f}x "
                  f"(per repeat {', '.join(f'{x:.2f}' for x in ratios)}; ideal 2.00x)")
        finally:
            for cluster in clusters.values():
                cluster.close()


if __name__ == "__main__":
    main()
