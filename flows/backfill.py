"""The operator's backfill over past dates: fetch, store and embed each date, throttled and resumable;
optionally previews (HTML files) or catch-up digests (plan + send)."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from digest import pipeline
from digest.send import send_day
from digest.config import Settings, get_settings
from flows.common import engine_for


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"backfill range is empty: {start} is after {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@task(cache_policy=NO_CACHE)
def backfill_date(s: Settings, day: date, refresh: bool) -> pipeline.BackfillDay:
    return pipeline.backfill_day(engine_for(s), s, day, refresh=refresh)


@task(cache_policy=NO_CACHE)
def preview_date(s: Settings, day: date, out_dir: str) -> int:
    return len(pipeline.preview(engine_for(s), s, day, out_dir))


@task(cache_policy=NO_CACHE)
def plan_and_send(s: Settings, day: date, empty_day: bool = False) -> tuple[int, int]:
    engine = engine_for(s)
    planned = pipeline.plan(engine, s, day, empty_day=empty_day)
    return planned.planned, send_day(engine, s, day).sent


@flow(name="backfill")
def backfill(start: date, end: date, send: bool = False, refresh: bool = False,
             preview_dir: str | None = None) -> list[pipeline.BackfillDay]:
    """Every date in ``[start, end]``: stored dates are skipped unless ``refresh``; requests are spaced
    by ``backfill_min_interval``. ``send=False`` plans nothing."""
    log = get_run_logger()
    s = get_settings()
    results = []
    for day in dates_between(start, end):
        result = backfill_date(s, day, refresh)
        results.append(result)
        log.info("%s: %s (%d new, %d embedded)", day, result.status, result.new, result.embedded)
        if result.status == "stored" and preview_dir:
            preview_date(s, day, preview_dir)
        if send:  # an empty day: only the weekly digests due (they cover a week)
            planned, sent = plan_and_send(s, day, result.status == "empty")
            log.info("%s: planned %d, sent %d", day, planned, sent)
    table = "\n".join(f"| {r.day} | {r.status} | {r.fetched} | {r.new} | {r.embedded} |" for r in results)
    create_markdown_artifact(markdown="| date | status | fetched | new | embedded |\n|---|---|---|---|---|\n" + table,
                             key="backfill", description=f"Backfill {start} to {end}")
    return results
