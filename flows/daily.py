"""The daily digest flow: fetch -> store -> embed -> plan -> send in batches -> summary.

Thin: every task calls one function of ``digest``. Tasks work on batches, never one task per mail."""

from __future__ import annotations

import math
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
from flows.common import engine_for


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
def embed_papers(s: Settings, day: date) -> int:
    return pipeline.embed(engine_for(s), s, day, day)


@task(cache_policy=NO_CACHE)
def plan_deliveries(s: Settings, day: date, empty_day: bool = False) -> pipeline.PlanResult:
    return pipeline.plan(engine_for(s), s, day, empty_day=empty_day)


@task(cache_policy=NO_CACHE)
def weekly_due(s: Settings, day: date) -> int:
    """How many weekly digests are due on ``day``: they cover a week, so an empty day still mails them."""
    return pipeline.weekly_due(engine_for(s), day)


@task(cache_policy=NO_CACHE)
def send_batch(s: Settings, day: date, connections: int) -> SendReport:
    """One sender with ``connections`` SMTP connections: claims batches of the day's planned rows until
    none are left. Several run at once safely (compare-and-set claims)."""
    return send_day(engine_for(s), s, day, connections=connections)


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


def _publish(summary: pipeline.DaySummary, warning: str | None = None) -> None:
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
        _publish(summary)
        return summary
    message = (f"no listing on a weekday ({weekday} {summary.day.isoformat()}): Hugging Face lists papers "
               f"every weekday, check the source (DIGEST_HF_BASE_URL) and run again")
    summary.listing = f"no listing on a weekday ({weekday}): suspicious"
    _publish(summary, message)
    return Completed(name=NO_LISTING, message=message, data=summary)


@flow(name="daily-digest", log_prints=True)
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
    summary = pipeline.DaySummary(day)
    empty = listing.is_empty
    if empty and not weekly_due(s, day):
        return _no_listing(summary)
    if not empty:
        stored = store_listing(s, listing)
        summary.papers_fetched, summary.papers_new = stored.fetched, stored.report.new
    if listing_file is None:
        summary.papers_late = store_late_listings(s, day)
    summary.papers_embedded = embed_papers(s, day)
    planned = plan_deliveries(s, day, empty)  # an empty day: only the weekly digests due
    summary.papers_embedded += planned.embedded
    summary.interests_embedded = planned.interests_embedded
    summary.deliveries_planned, summary.deliveries_skipped = planned.planned, planned.skipped
    if send:
        connections = s.smtp_connections if s.smtp_host else 1
        shares = connection_shares(connections, planned.planned, s.flow_send_batch)
        futures = [send_batch.submit(s, day, n) for n in shares]
        reports = [f.result() for f in futures]
        reports.append(send_leased(s, day))  # after every sender of this run: what is left is another's
        for report in reports:
            summary.sent += report.sent
            summary.failed += report.failed
            summary.resent += report.resent
            summary.suppressed += report.suppressed
            summary.retried += report.retried
        summary.pending = reports[-1].pending
    if empty:
        return _no_listing(summary)
    _publish(summary)
    return summary
