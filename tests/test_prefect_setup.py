"""The Prefect set-up papers-digest ships, without a server: the crashed-run automation file operators load
equals the one `digest serve` creates, its window outlasts the heartbeat, and the deployments carry the
schedule the settings ask for."""

from __future__ import annotations

from datetime import timedelta

import yaml
from prefect.events.schemas.automations import AutomationCore

from flows.prefect_api import HEARTBEAT_SECONDS, ZOMBIE_AFTER_SECONDS, zombie_automation

from .builders import ROOT, bare_settings

FIELDS = {"name", "description", "enabled", "trigger", "actions"}


def test_crash_watch_yaml_is_the_automation_serve_creates() -> None:
    shipped = AutomationCore.model_validate(yaml.safe_load((ROOT / "deploy" / "crash-watch.yaml").read_text()))
    made = zombie_automation()
    assert shipped.model_dump(include=FIELDS) == made.model_dump(include=FIELDS)


def test_the_window_outlasts_the_heartbeat() -> None:
    assert ZOMBIE_AFTER_SECONDS >= 3 * HEARTBEAT_SECONDS
    assert zombie_automation().trigger.within == timedelta(seconds=ZOMBIE_AFTER_SECONDS)


def test_daily_schedule_is_the_cron_or_the_interval() -> None:
    from flows.deployments import daily_schedule

    cron = daily_schedule(bare_settings(schedule_cron="30 6 * * 1-5", timezone="Europe/Berlin"))
    assert (cron.cron, cron.timezone, cron.interval) == ("30 6 * * 1-5", "Europe/Berlin", None)
    interval = daily_schedule(bare_settings(schedule_interval_seconds=10))
    assert (interval.cron, interval.interval) == (None, timedelta(seconds=10))
