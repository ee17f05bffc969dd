"""The daily digest flow: fetch -> store -> embed (papers and their abstracts' sentences) -> plan -> send in
batches -> summary.

Thin: every task calls one function of ``digest``. Tasks work on batches, never one task per mail. The
send batches are submitted to the flow's task runner (``flows/runners.py``: threads, or a Dask cluster
when ``DIGEST_TASK_RUNNER=dask``); the backfill (``flows/backfill.py``) runs the same tasks per date."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from datetime import date

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from digest import pipeline
from digest.models import Listing
from digest.send import SendReport, send_day, settle_leases
from digest.sources import FetchError, HostNotFoundError
from digest.config import Settings, get_settings
from flows.common import engine_for, unsent
from flows.runners import ConfiguredTaskRunner, current_runner


def _network_error(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Retry the fetch only for network failures: a listing that does not parse fails at once, and so
    does a host name that does not resolve (no network, or a wrong URL: waiting does not help)."""
    try:
        state.result()
    except HostNotFoundError:
        return False
    except FetchError:
        return True
    except Exception:
        return False
    return False


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30), retry_jitter_factor=0.5,
      retry_condition_fn=_network_error, cache_policy=NO_CACHE)
def fetch_listing(s: Settings, day: date, listing_file: str | None) -> Listing:
    return pipeline.fetch(s, day, listing_file)


@task(cache_policy=NO_CACHE)
def store_listing(s: Settings, listing: Listing) -> pipeline.StoreResult:
    return pipeline.store(engine_for(s), listing)


@task(cache_policy=NO_CACHE)
def store_late_listings(s: Settings, day: date) -> int:
    return sum(r.report.new for r in pipeline.late_listings(engine_for(s), s, day))


@task(cache_policy=NO_CACHE)
def embed_papers(s: Settings, day: date, start: date | None = None) -> pipeline.EmbedResult:
    """The papers listed from ``start`` (default ``day``) to ``day``: their vectors and their abstracts'
    sentences, where missing (the plan then only reads caches)."""
    return pipeline.embed(engine_for(s), s, start or day, day)


@task(cache_policy=NO_CACHE)
def plan_deliveries(s: Settings, day: date, empty_day: bool = False) -> pipeline.PlanResult:
    return pipeline.plan(engine_for(s), s, day, empty_day=empty_day)


@task(cache_policy=NO_CACHE)
def weekly_due(s: Settings, day: date) -> int:
    """How many weekly digests are due on ``day``: they cover a week, so an empty day still mails them."""
    return pipeline.weekly_due(engine_for(s), day)


@dataclass(frozen=True)
class SentSlice:
    report: SendReport
    process: str  # "host:pid" of the process that ran the task (a Dask worker's, or the flow's own)


@task(cache_policy=NO_CACHE)
def send_batch(s: Settings, day: date, connections: int, limit: int | None = None) -> SentSlice:
    """One sender with ``connections`` SMTP connections: claims batches of the day's planned rows until
    none are left, or until it has claimed ``limit`` (a bounded slice of the outbox). Several run at once
    safely, in one process or on several machines (compare-and-set claims, SKIP LOCKED on PostgreSQL)."""
    report = send_day(engine_for(s), s, day, connections=connections, limit=limit)
    return SentSlice(report, f"{socket.gethostname()}:{os.getpid()}")


@task(cache_policy=NO_CACHE)
def send_leased(s: Settings, day: date) -> SendReport:
    """Rows another sender still holds (a crashed run's lease): waited for, bounded by
    ``send_lease_wait_seconds``, and sent; raises ``StillLeased`` (the run fails) if they outlast it."""
    return settle_leases(engine_for(s), s, day)


def connection_shares(connections: int, planned: int, per_task: int) -> list[int]:
    """``connections`` split over the send tasks (one per ``per_task`` planned rows, at most one per
    connection): the tasks together open ``connections`` connections, never more."""
    tasks = max(1, min(connections, math.ceil(max(planned, 1) / per_task)))
    return [connections // tasks + (1 if i < connections % tasks else 0) for i in range(tasks)]


def slice_sizes(rows: int, slots: int, per_task: int) -> list[int]:
    """``rows`` planned deliveries cut into bounded slices, one task each: at least one per slot (so every
    Dask worker gets work), at most ``per_task`` rows each, as even as possible."""
    if rows <= 0:
        return []
    tasks = min(rows, max(slots, math.ceil(rows / per_task)))
    return [rows // tasks + (1 if i < rows % tasks else 0) for i in range(tasks)]


def send_planned(s: Settings, day: date) -> tuple[list[SendReport], int]:
    """The send step of a day, in a flow run: the day's planned deliveries sent by tasks on the flow's task
    runner, then what another sender still holds (``send_leased``, last). Threads: one task per
    ``flow_send_batch`` rows, at most one per connection, ``smtp_connections`` in total. Dask: bounded
    slices (``slice_sizes``), each task with its share of the connections, and one more unbounded task if
    retries spent a slice's budget before its rows were sent. Returns the reports and how many processes
    ran send tasks."""
    connections = s.smtp_connections if s.smtp_host else 1
    runner = current_runner()
    done: list[SentSlice] = []
    rows = unsent(s, day)
    if runner is not None and runner.is_dask:
        if rows:
            slots = runner.slots()
            each = max(1, connections // slots)
            futures = [send_batch.submit(s, day, each, size) for size in slice_sizes(rows, slots, s.flow_send_batch)]
            done = [f.result() for f in futures]
            if unsent(s, day):
                done.append(send_batch.submit(s, day, each).result())
    else:
        futures = [send_batch.submit(s, day, n) for n in connection_shares(connections, rows, s.flow_send_batch)]
        done = [f.result() for f in futures]
    reports = [d.report for d in done]
    reports.append(send_leased(s, day))  # after every sender of this run: what is left is another's
    return reports, len({d.process for d in done})


def add_reports(summary: pipeline.DaySummary, sent: tuple[list[SendReport], int]) -> None:
    reports, summary.send_processes = sent
    for report in reports:
        summary.sent += report.sent
        summary.failed += report.failed
        summary.resent += report.resent
        summary.suppressed += report.suppressed
        summary.retried += report.retried
    if reports:
        summary.pending = reports[-1].pending


def runner_name() -> str:
    runner = current_runner()
    return runner.describe() if runner is not None else "thread"


def publish(summary: pipeline.DaySummary, warning: str | None = None) -> None:
    log = get_run_logger()
    log.info("digest %s: %s", summary.day, ", ".join(f"{k} {v}" for k, v in summary.rows()))
    markdown = summary.markdown()
    if warning:
        log.warning("%s", warning)
        markdown = f"> **Warning:** {warning}\n\n{markdown}"
    create_markdown_artifact(markdown=markdown, key=f"digest-{summary.day.isoformat()}",
                             description=f"Daily digest summary for {summary.day.isoformat()}")


NO_LISTING = "NoListing"  # the name of the Completed state of a run whose weekday had no listing


def _no_listing(summary: pipeline.DaySummary) -> pipeline.DaySummary | State:
    """An empty day. Hugging Face lists papers every weekday: an empty Monday-Friday is suspicious (an
    outage, a changed API) and ends the run in the distinct state Completed/NoListing (``digest run``:
    exit code 4); an empty weekend is normal and quiet. No daily digest is planned either way (the next
    run's re-fetch and catch-up window mail whatever comes late); weekly digests due that day are."""
    weekday = summary.day.strftime("%A")
    if summary.day.weekday() >= 5:
        summary.listing = f"no listing ({weekday}, as usual at weekends)"
        publish(summary)
        return summary
    message = (f"no listing on a weekday ({weekday} {summary.day.isoformat()}): Hugging Face lists papers "
               f"every weekday, check the source (DIGEST_HF_BASE_URL) and run again")
    summary.listing = f"no listing on a weekday ({weekday}): suspicious"
    publish(summary, message)
    return Completed(name=NO_LISTING, message=message, data=summary)


@flow(name="daily-digest", log_prints=True, task_runner=ConfiguredTaskRunner())
def daily_digest(day: date | None = None, listing_file: str | None = None,
                 send: bool = True) -> pipeline.DaySummary | State:
    """The digest of listing day ``day``. ``day=None``: the scheduled day, ``today - lag_days`` in the
    configured timezone (the last complete day), or the file's own day with ``listing_file`` (replay a
    saved listing instead of fetching). ``send=False``: plan only (dry run). An empty weekday ends in
    the state Completed named "NoListing" (a caller still gets the summary as the result); on an empty
    day only the weekly digests due are planned and sent (a week's papers)."""
    s = get_settings()
    if day is None and listing_file is None:
        day = pipeline.scheduled_day(s)
    listing = fetch_listing(s, day, listing_file)  # raises: the run fails before anything is planned
    day = day or listing.listing_date
    summary = pipeline.DaySummary(day, task_runner=runner_name())
    empty = listing.is_empty
    if empty and not weekly_due(s, day):
        return _no_listing(summary)
    if not empty:
        stored = store_listing(s, listing)
        summary.papers_fetched, summary.papers_new = stored.fetched, stored.report.new
    if listing_file is None:
        summary.papers_late = store_late_listings(s, day)
    # The whole window the ranking reads (the longest cadence's): the day's papers, the late ones just
    # stored for earlier days, and any an older version stored without sentences.
    embedded = embed_papers(s, day, pipeline.candidate_start(s, day))
    planned = plan_deliveries(s, day, empty)  # an empty day: only the weekly digests due
    summary.papers_embedded = embedded.papers + planned.embedded
    summary.sentences_embedded = embedded.sentences + planned.sentences_embedded
    summary.interests_embedded = planned.interests_embedded
    summary.deliveries_planned, summary.deliveries_skipped = planned.planned, planned.skipped
    if send:
        add_reports(summary, send_planned(s, day))
    if empty:
        return _no_listing(summary)
    publish(summary)
    return summary
