"""Scheduling for real: `digest serve` and `digest run` as subprocesses on a fresh PREFECT_HOME with no
PREFECT_API_URL (they start their own Prefect server), the HF stand-in, the SMTP test server and a real
SQLite file. Slow and few: each starts a real Prefect server (15-40 s here).

- `digest serve` starts scheduled runs (a 10 s interval schedule), and after a `kill -9` of the whole
  service mid-run (serve, its flow run and its Prefect server) a restarted serve runs the next scheduled run
  instead of cancelling it forever: the dead run is marked Crashed by the heartbeat automation.
- A `kill -9` of `digest run` leaves no Prefect server behind.
Nothing of a test's PREFECT_HOME is left running afterwards (checked in /proc)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from digest import pipeline

from .builders import API_2025_06_05, SECRET, Answer, HfScript, Query, add_reader, bare_settings, items_for
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow
SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())
DIGEST = Path(sys.executable).parent / "digest"


def processes_of(home: Path) -> list[int]:
    """Every live process whose environment has PREFECT_HOME=home (ours and all its children)."""
    needle = f"PREFECT_HOME={home}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(what: str, check: Callable[[], bool], timeout: float, alive: subprocess.Popen[str] | None = None,
             log: Path | None = None) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout`` (or when ``alive`` exits)."""
    t0 = time.monotonic()
    while not check():
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"exited with {alive.returncode} while waiting for {what}: "
                        f"{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"no {what} within {timeout:.0f} s: {log.read_text()[-3000:] if log else ''}")
        time.sleep(0.5)
    return time.monotonic() - t0


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh PREFECT_HOME; whatever still runs with it at the end is reported and killed."""
    path = tmp_path / "prefect-home"
    yield path
    for pid in processes_of(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end: lets the stand-in's hanging answers go."""
    event = threading.Event()
    yield event
    event.set()


def hang_first_then_answer(hf: HfScript, release: threading.Event) -> None:
    """The first listing request hangs (a run to kill mid-way); later ones get a listing of the asked day."""
    first = threading.Lock()

    def answer(query: Query) -> Answer:
        if first.acquire(blocking=False):
            release.wait(900)
        day = date.fromisoformat(query["date"][0])
        return 200, {}, items_for(day, SOURCE[:5])

    hf.routes["/api/daily_papers"] = answer


def service_env(home: Path, db_url: str, hf: HfScript, smtp: SmtpTestServer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DIGEST_"))}
    env.update({
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240", "HF_HUB_OFFLINE": "1",
        "DIGEST_DATABASE_URL": db_url, "DIGEST_HF_BASE_URL": hf.base, "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_HTTP_READ_TIMEOUT": "900", "DIGEST_REFETCH_MAX_DAYS": "0",
        "DIGEST_SCHEDULE_INTERVAL_SECONDS": "10",
    })
    if smtp is not None:
        env.update({"DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp.port),
                    "DIGEST_SMTP_SECURITY": "none"})
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as out:
        return subprocess.Popen([str(DIGEST), *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)


def flow_runs(api: str) -> list[Any]:
    from prefect.client.orchestration import PrefectClient

    async def read() -> list[Any]:
        async with PrefectClient(api) as client:
            return await client.read_flow_runs()

    return asyncio.run(read())


def test_serve_runs_the_schedule_and_a_crashed_run_does_not_block_the_next(
        home: Path, db_url: str, hf_server: HfScript, smtp: SmtpTestServer, release: threading.Event,
        tmp_path: Path) -> None:
    pipeline.open_store(bare_settings(database_url=db_url))
    add_reader(bare_settings(database_url=db_url), "ada@example.org", interests=())
    hang_first_then_answer(hf_server, release)
    env = service_env(home, db_url, hf_server, smtp)

    first_log = tmp_path / "serve-1.log"
    first = start(["serve"], env, first_log)
    started = wait_for("scheduled run", lambda: len(hf_server.log) > 0, 300, first, first_log)
    time.sleep(8)  # the run's first heartbeat reaches the server
    os.killpg(first.pid, signal.SIGKILL)  # the whole service dies at once: serve, flow run, Prefect server
    first.wait()
    killed_at = time.monotonic()
    wait_for("end of the killed service", lambda: not processes_of(home), 30)

    second_log = tmp_path / "serve-2.log"
    second = start(["serve"], env, second_log)  # as systemd's Restart= would
    wait_for("mail from a later scheduled run", lambda: len(smtp.messages) > 0, 600, second, second_log)
    after_kill = time.monotonic() - killed_at
    print(f"\nfirst scheduled run started {started:.0f} s after `digest serve`; after kill -9 of the service "
          f"and a restart, a later run mailed {after_kill:.0f} s after the kill")
    assert [m.rcpt for m in smtp.messages] == ["ada@example.org"]

    api = re.search(r"Prefect API (http://\S+/api)", second_log.read_text())
    assert api, second_log.read_text()[-2000:]
    # The mail arrives before its run reports Completed (the summary and the final state come after).
    seen: dict[str, Any] = {}

    def completed() -> bool:
        seen["runs"] = [r for r in flow_runs(api.group(1)) if r.state is not None]
        return any(r.state.name == "Completed" for r in seen["runs"])

    wait_for("the mailing run's Completed state", completed, 60, second, second_log)
    runs = seen["runs"]
    states = sorted(r.state.name for r in runs)
    crashed = [r.state.message or "" for r in runs if r.state.name == "Crashed"]
    assert len(crashed) == 1 and "heartbeat" in crashed[0], states  # the killed run, found by its silence
    print(f"flow runs by state: { {s: states.count(s) for s in sorted(set(states))} }")

    stopping = time.monotonic()
    second.send_signal(signal.SIGTERM)
    second.wait(120)
    wait_for("end of every process of the service", lambda: not processes_of(home), 30)
    print(f"SIGTERM to `digest serve`: every process of the service gone after {time.monotonic() - stopping:.0f} s")


def test_kill_9_of_digest_run_leaves_no_prefect_server(home: Path, db_url: str, hf_server: HfScript,
                                                        release: threading.Event, tmp_path: Path) -> None:
    hang_first_then_answer(hf_server, release)
    log = tmp_path / "run.log"
    run = start(["run", "--date", "2025-06-11"], service_env(home, db_url, hf_server, None), log)
    wait_for("the run's fetch", lambda: len(hf_server.log) > 0, 300, run, log)
    others = [pid for pid in processes_of(home) if pid != run.pid]
    assert others, "the run has a Prefect server of its own"
    run.kill()
    run.wait()
    gone = wait_for("the end of the run's Prefect server", lambda: not processes_of(home), 30)
    print(f"\nno process of the run left {gone:.1f} s after its kill -9 (had {len(others)} child processes)")
