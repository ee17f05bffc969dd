"""Where the flows find their Prefect API: the operator's server (``PREFECT_API_URL``), or a real
``prefect server start`` of our own, as a child process that dies with us.

Why not Prefect's temporary (ephemeral) server: it never runs the scheduler services, so ``serve()`` on it
never starts a scheduled run; it runs no automations (nothing marks a crashed run), and a ``kill -9`` of
the process that started it leaves it running, orphaned. Our own child runs every service the caller
asks for, keeps leases on concurrency slots on disk (a restart does not forget who holds the daily run's
slot), and gets SIGTERM from the kernel when its parent dies (Linux ``PR_SET_PDEATHSIG``), however the
parent died.

While the API is in use, flow runs send a heartbeat every ``HEARTBEAT_SECONDS``; the automation made by
``ensure_zombie_automation`` marks a run Crashed when its heartbeats stop for ``ZOMBIE_AFTER_SECONDS``
(its process was killed), which frees the daily run's concurrency slot for the next scheduled run."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

HEARTBEAT_SECONDS = 30  # Prefect's minimum; the default (180) is longer than the zombie window below
ZOMBIE_AFTER_SECONDS = 90  # three missed heartbeats
ZOMBIE_AUTOMATION = "papers-digest: crash flow runs whose heartbeat stopped"
WATCHED_FLOWS = ("daily-digest", "backfill")  # the flows the automation watches (flows/daily.py, backfill.py)
SERVER_LOG = "digest-prefect-server.log"  # in PREFECT_HOME
SERVER_URL_FILE = "digest-prefect-server.url"  # in PREFECT_HOME while our own server runs (`digest status`)
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
_PR_SET_PDEATHSIG = 1


class PrefectApiError(RuntimeError):
    """The Prefect API cannot be used: the given ``PREFECT_API_URL`` does not answer, or our own server
    did not start. The message says what to do."""


@dataclass(frozen=True)
class PrefectApi:
    url: str  # ends in /api
    own_server_pid: int | None = None  # our child server, None when PREFECT_API_URL was given
    log: Path | None = None  # our child server's output


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM when the parent (thread) dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc Linux: the parent's clean exit still stops the server
        return
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api: str, timeout: float = 2.0) -> str | None:
    """``None`` when ``{api}/health`` answers 200, else what went wrong."""
    try:
        response = httpx.get(f"{api.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def _startup_timeout() -> float:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def start_server(home: Path, *, scheduler: bool, timeout: float) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``prefect server start`` on a free loopback port with ``home`` as its PREFECT_HOME and wait
    until it answers. ``scheduler``: run the services that create and watch scheduled runs."""
    if threading.current_thread() is not threading.main_thread():
        # PR_SET_PDEATHSIG fires when the forking *thread* ends: only the main thread lives as long as we do.
        raise RuntimeError("start the Prefect server from the main thread")
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    on = "true" if scheduler else "false"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": on,
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": on,
    }
    env.pop("PREFECT_API_URL", None)
    log = home / SERVER_LOG
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-ui"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - main thread, checked above
        )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefectApiError(
                f"the Prefect server exited with code {proc.returncode} before answering ({_tail(log)}); "
                f"its log: {log}"
            )
        if _healthy(api, timeout=1.0) is None:
            return proc, api, log
        time.sleep(0.25)
    stop_server(proc)
    raise PrefectApiError(
        f"the Prefect server did not answer within {timeout:.0f} s (raise "
        f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set PREFECT_API_URL); its log: {log}"
    )


def _send_what_is_queued(timeout: float = 10.0) -> None:
    """Let Prefect's background workers send the run's last logs and events while the server still
    answers (else they print 'Error logging to API' at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


def stop_server(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def prefect_api(scheduler: bool = True) -> Iterator[PrefectApi]:
    """The Prefect API for this process and the flow runs it starts.

    With ``PREFECT_API_URL`` set: that server, checked first (one line if it does not answer). Else our own
    real server (``scheduler``: with the services that create scheduled runs), stopped on the way out
    and by the kernel if we die. Either way, flow runs send heartbeats every ``HEARTBEAT_SECONDS``."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        temporary_settings,
    )

    given = PREFECT_API_URL.value()
    if given:
        problem = _healthy(given, timeout=10.0)
        if problem is not None:
            raise PrefectApiError(
                f"PREFECT_API_URL={given} does not answer ({problem}): start that Prefect server, or unset "
                f"PREFECT_API_URL and papers-digest starts its own"
            )
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
            yield PrefectApi(given)
        return
    home = Path(PREFECT_HOME.value())
    proc, api, log = start_server(home, scheduler=scheduler, timeout=_startup_timeout())
    url_file = home / SERVER_URL_FILE
    url_file.write_text(api)
    try:
        with temporary_settings({PREFECT_API_URL: api, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
            try:
                yield PrefectApi(api, proc.pid, log)
            finally:
                _send_what_is_queued()
    finally:
        stop_server(proc)
        with contextlib.suppress(OSError):
            if url_file.read_text() == api:  # another process's server may have written it since
                url_file.unlink()


def zombie_automation() -> Any:
    """The automation that marks a flow run Crashed when it has sent no event for ``ZOMBIE_AFTER_SECONDS``
    after a heartbeat: its process died (``kill -9``, OOM, power) without saying so. A Crashed run frees
    the deployment's concurrency slot, so the next scheduled run goes ahead instead of being cancelled.
    ``deploy/crash-watch.yaml`` is the same, for `prefect automation create --from-file`."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=ZOMBIE_AUTOMATION,
        description=f"papers-digest: no heartbeat for {ZOMBIE_AFTER_SECONDS} s means the run's process died; "
                    f"mark it Crashed so the next run is not blocked. Needs flow runs to send heartbeats "
                    f"every {HEARTBEAT_SECONDS} s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # any flow-run event counts as alive: a heartbeat, or a final state of any name (NoListing too)
            expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            # only our flows: on a shared server, other flows may send heartbeats less often than the window
            match_related=ResourceSpecification({"prefect.resource.role": "flow",
                                                 "prefect.resource.name": list(WATCHED_FLOWS)}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=ZOMBIE_AFTER_SECONDS),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {ZOMBIE_AFTER_SECONDS} s: the process running this flow run died.",
        )],
    )


def ensure_zombie_automation() -> bool:
    """Create ``zombie_automation()`` on the current Prefect API unless one of that name exists there
    (idempotent: every `digest serve` start calls it). Returns whether it was created now."""
    from prefect.automations import Automation

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return False
    except ValueError:
        pass
    zombie_automation().create()
    return True


def find_api() -> tuple[str | None, str]:
    """A Prefect API to read from without starting anything: ``PREFECT_API_URL``, else the server of a
    `digest serve` or `digest run` running with this PREFECT_HOME. ``(url, "")`` when it answers, else
    ``(None, why not)``."""
    from prefect.settings import Settings as PrefectSettings

    current = PrefectSettings()  # read afresh: environment and profile as they are now
    url = current.api.url
    source = "PREFECT_API_URL"
    if not url:
        url_file = Path(current.home) / SERVER_URL_FILE
        try:
            url = url_file.read_text().strip()
            source = f"the server of a `digest serve`/`digest run` ({url_file})"
        except OSError:
            return None, "PREFECT_API_URL is not set and no `digest serve` or `digest run` is running here"
    problem = _healthy(url)
    if problem is not None:
        return None, f"{source} {url} does not answer ({problem})"
    return url, ""


@dataclass(frozen=True)
class RunLine:
    name: str
    state: str  # the state's name: Completed, NoListing, Failed, Crashed, Cancelled, Running, ...
    started: str  # ISO time or ""
    message: str


def recent_flow_runs(api: str, flow_name: str = "daily-digest", limit: int = 5) -> list[RunLine]:
    """The last ``limit`` runs of ``flow_name`` that started, newest first."""
    import asyncio

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[RunLine]:
        async with PrefectClient(api) as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
                sort=FlowRunSort.START_TIME_DESC, limit=limit)
        return [RunLine(r.name, r.state.name if r.state else "?",
                        r.start_time.isoformat(timespec="seconds") if r.start_time else "",
                        (r.state.message or "") if r.state else "") for r in runs]

    return asyncio.run(read())
