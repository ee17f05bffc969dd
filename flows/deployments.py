"""The deployments: ``daily-digest`` on a cron (timezone, concurrency 1, CANCEL_NEW) and ``backfill``
without schedule. ``deploy/prefect.yaml`` says the same for a work-pool set-up."""

from __future__ import annotations

from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from digest.config import Settings
from flows.backfill import backfill
from flows.daily import daily_digest


def deployments(settings: Settings) -> list[Any]:
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    return [
        daily_digest.to_deployment(
            name="daily-digest",
            schedules=[Cron(settings.schedule_cron, timezone=settings.timezone)],
            concurrency_limit=one_at_a_time,
            description="The day's digest for every active subscriber.",
        ),
        backfill.to_deployment(name="backfill", description="Replay past dates (run by hand)."),
    ]


def build_deployments(settings: Settings, apply: bool = True) -> list[Any]:
    deps = deployments(settings)
    return [d.apply() for d in deps] if apply else deps


def serve_forever(settings: Settings) -> None:
    serve(*deployments(settings))
