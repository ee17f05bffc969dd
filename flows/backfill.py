"""The operator's backfill over past dates, on the daily flow's own tasks (``flows/daily.py``): each date is
fetched (throttled), stored and embedded (papers and their abstracts' sentences) as a day of
``daily-digest`` is; with ``send`` it is planned and sent by the same send step, and its summary published
as the daily run's. Resumable: a date already stored is not fetched again (unless ``refresh``). Embedding
is submitted to the flow's task runner (a Dask worker with ``DIGEST_TASK_RUNNER=dask``), so it overlaps
with fetching the next dates."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from digest import pipeline
from digest.config import Settings, get_settings
from flows.common import engine_for
from flows.daily import (
    add_reports,
    embed_papers,
    fetch_listing,
    plan_deliveries,
    publish,
    runner_name,
    send_planned,
    store_listing,
    weekly_due,
)
from flows.runners import ConfiguredTaskRunner

SKIPPED = "skipped (already stored)"


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"backfill range is empty: {start} is after {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@task(cache_policy=NO_CACHE)
def preview_date(s: Settings, day: date, out_dir: str) -> int:
    return len(pipeline.preview(engine_for(s), s, day, out_dir))


def _send_day(s: Settings, day: date, r: pipeline.BackfillDay, empty_day: bool = False) -> pipeline.BackfillDay:
    """Plan and send ``day`` as ``daily-digest`` does (same tasks, same send step, same summary).
    ``empty_day``: only the weekly digests due (they cover a week)."""
    planned = plan_deliveries(s, day, empty_day)
    summary = pipeline.DaySummary(day, task_runner=runner_name(), papers_fetched=r.fetched, papers_new=r.new,
                                  papers_embedded=r.embedded + planned.embedded,
                                  sentences_embedded=r.sentences + planned.sentences_embedded,
                                  interests_embedded=planned.interests_embedded,
                                  deliveries_planned=planned.planned, deliveries_skipped=planned.skipped)
    add_reports(summary, send_planned(s, day))
    publish(summary)
    return replace(r, planned=planned.planned, sent=summary.sent)


@flow(name="backfill", task_runner=ConfiguredTaskRunner())
def backfill(start: date, end: date, send: bool = False, refresh: bool = False,
             preview_dir: str | None = None) -> list[pipeline.BackfillDay]:
    """Every date in ``[start, end]``: stored dates are skipped unless ``refresh``; listing requests are
    spaced by ``backfill_min_interval``. ``preview_dir``: each newly stored date's digests as HTML files.
    ``send=False`` plans nothing."""
    log = get_run_logger()
    s = get_settings()
    engine = engine_for(s)
    results: list[pipeline.BackfillDay] = []
    embedding: dict[date, PrefectFuture[pipeline.EmbedResult]] = {}

    def embedded(r: pipeline.BackfillDay) -> pipeline.BackfillDay:
        future = embedding.pop(r.day, None)
        if future is None:
            return r
        done = future.result()
        return replace(r, embedded=done.papers, sentences=done.sentences)

    for day in dates_between(start, end):
        if not refresh and pipeline.is_stored(engine, day):
            r = pipeline.BackfillDay(day, SKIPPED)
        else:
            pipeline.backfill_throttle(s)
            listing = fetch_listing(s, day, None)  # raises on a listing that does not parse
            if listing.is_empty:
                r = pipeline.BackfillDay(day, "empty")
            else:
                stored = store_listing(s, listing)
                embedding[day] = embed_papers.submit(s, day)
                r = pipeline.BackfillDay(day, "stored", stored.fetched, stored.report.new)
        if r.status == "stored" and preview_dir:
            r = embedded(r)
            r = replace(r, previews=preview_date(s, day, preview_dir))
        if send and (r.status != "empty" or weekly_due(s, day)):  # an empty day: the weekly digests due
            r = _send_day(s, day, embedded(r), empty_day=r.status == "empty")
        results.append(r)
    results = [embedded(r) for r in results]
    for r in results:
        log.info("%s: %s (%d new, %d embedded, %d sentences, %d previews, %d planned, %d sent)", r.day, r.status,
                 r.new, r.embedded, r.sentences, r.previews, r.planned, r.sent)
    rows = "\n".join(f"| {r.day} | {r.status} | {r.fetched} | {r.new} | {r.embedded} | {r.sentences} | {r.previews} "
                     f"| {r.planned} | {r.sent} |" for r in results)
    create_markdown_artifact(
        markdown=f"Task runner: {runner_name()}\n\n| date | status | fetched | new | embedded | sentences | previews "
                 "| planned | sent |\n|---|---|---|---|---|---|---|---|---|\n" + rows,
        key="backfill", description=f"Backfill {start} to {end}")
    return results
