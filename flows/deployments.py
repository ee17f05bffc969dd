"""The deployments: ``daily-digest`` on a cron (timezone, concurrency 1, CANCEL_NEW) and ``backfill``
without schedule. ``deploy/prefect.yaml`` says the same for a work-pool set-up, with the schedule filled in
from the same settings by ``prefect_deploy`` (``digest deploy``).

``serve_forever`` (``digest serve``) serves them against a Prefect API that schedules (``prefect_api``:
the operator's server, or our own real server child) and makes sure crashed runs are detected."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import serve
from prefect.deployments.runner import EntrypointType
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron, Interval, Schedule

from digest.config import Settings
from flows.backfill import backfill
from flows.daily import daily_digest
from flows.prefect_api import ZOMBIE_AFTER_SECONDS, ensure_zombie_automation, prefect_api


def daily_schedule(settings: Settings) -> Schedule:
    if settings.schedule_interval_seconds:
        return Interval(timedelta(seconds=settings.schedule_interval_seconds), timezone=settings.timezone)
    return Cron(settings.schedule_cron, timezone=settings.timezone)


def deployments(settings: Settings) -> list[Any]:
    """The two deployments. Their entrypoints are module paths (``flows.daily:daily_digest``), not file
    paths: a flow loaded from a file path lives in a module named ``daily`` that a Dask worker cannot
    import, and its tasks could not be sent there."""
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    return [
        daily_digest.to_deployment(
            name="daily-digest",
            schedules=[daily_schedule(settings)],
            concurrency_limit=one_at_a_time,
            description="The day's digest for every active subscriber.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        backfill.to_deployment(name="backfill", description="Replay past dates (run by hand).",
                               entrypoint_type=EntrypointType.MODULE_PATH),
    ]


def build_deployments(settings: Settings, apply: bool = True) -> list[Any]:
    deps = deployments(settings)
    return [d.apply() for d in deps] if apply else deps


def serve_forever(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Serve both deployments until SIGTERM/SIGINT: against ``PREFECT_API_URL``, or our own Prefect server
    with its scheduler (stopped when we stop, and when we die). Creates the crashed-run automation first."""
    with prefect_api(scheduler=True) as api:
        where = f"own server, pid {api.own_server_pid}, log {api.log}" if api.own_server_pid else "PREFECT_API_URL"
        say(f"Prefect API {api.url} ({where})")
        created = ensure_zombie_automation()
        say(f"crashed-run watch: a run without heartbeat for {ZOMBIE_AFTER_SECONDS} s is marked Crashed "
            f"({'automation created' if created else 'automation present'})")
        serve(*deployments(settings))


def prefect_deploy(settings: Settings, prefect_file: Path, *, pool: str | None = None,
                   home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` on ``prefect_file`` (deploy/prefect.yaml) with the schedule of ``settings``
    (``DIGEST_SCHEDULE_CRON``, ``DIGEST_TIMEZONE``: what ``digest serve`` uses) and ``DIGEST_HOME`` (the
    directory the workers run the flows from; default: the repository holding ``prefect_file``) in its
    environment, from that directory. ``pool`` replaces the work pool named in the file."""
    if settings.schedule_interval_seconds:
        raise ValueError("DIGEST_SCHEDULE_INTERVAL_SECONDS is for trials with `digest serve`; deploy/prefect.yaml "
                         "takes DIGEST_SCHEDULE_CRON: unset it")
    prefect_file = prefect_file.resolve()
    if not prefect_file.is_file():
        raise ValueError(f"{prefect_file} does not exist: give --prefect-file (deploy/prefect.yaml of the repository)")
    root = (home or prefect_file.parent.parent).resolve()
    env = os.environ | {"DIGEST_SCHEDULE_CRON": settings.schedule_cron, "DIGEST_TIMEZONE": settings.timezone,
                        "DIGEST_HOME": str(root)}
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    if pool:
        cmd += ["--pool", pool]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
