"""The day as plain functions (fetch, store, ...), each taking and returning plain data.

``flows/`` wraps these in Prefect tasks; the CLI calls them directly."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select

from digest.config import Settings
from digest.models import Listing, Pick, Subscriber, SubscriberStatus, UpsertReport
from digest.sources import huggingface
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.papers import upsert_papers
from digest.store.tables import DeliveryRow

if TYPE_CHECKING:  # heavy imports (torch) only when embedding
    from digest.embed import Embedder
    from digest.rank import RankParams


def open_store(settings: Settings, migrate: bool = True) -> Engine:
    """The engine for ``settings.database_url``, migrated to the newest schema."""
    engine = create_db_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return engine


def fetch(settings: Settings, day: date | None = None, from_file: str | Path | None = None) -> Listing:
    """One day's listing from Hugging Face, or a saved listing file. Raises ``ListingFormatError`` /
    ``FetchError``: nothing downstream runs on a listing that did not parse."""
    if from_file is not None:
        return huggingface.load_listing_file(from_file, day)
    if day is None:
        raise ValueError("fetch needs a date or a file")
    return huggingface.fetch_listing(day, settings)


@dataclass(frozen=True, slots=True)
class StoreResult:
    listing_date: date
    fetched: int
    report: UpsertReport


def store(engine: Engine, listing: Listing) -> StoreResult:
    """Upsert the listing's papers in one transaction."""
    with session_factory(engine).begin() as session:
        report = upsert_papers(session, listing.papers)
    return StoreResult(listing.listing_date, len(listing.papers), report)


# ------------------------------------------------------------------------------------- embed and rank


def embed(
    engine: Engine,
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    arxiv_ids: Sequence[str] | None = None,
    embedder: Embedder | None = None,
) -> int:
    """Encode the stored papers (listing dates ``[start, end]`` and/or ``arxiv_ids``; all when none) that
    have no vector for ``settings.model_name`` or whose title/abstract changed. Returns how many."""
    from digest.embed import Embedder, embed_missing

    embedder = embedder or Embedder.from_settings(settings)
    return embed_missing(engine, embedder, arxiv_ids, start, end)


def digest_window(day: date, last_digest: date | None = None, max_days: int = 7) -> tuple[date, date]:
    """Listing dates a digest for ``day`` covers: ``day`` itself, or every day since the subscriber's
    last digest (exclusive), at most ``max_days`` days."""
    if last_digest is None or last_digest >= day:
        return day, day
    start = max(last_digest + timedelta(days=1), day - timedelta(days=max_days - 1))
    return start, day


def rank_params(settings: Settings) -> RankParams:
    from digest.rank import RankParams

    return RankParams.from_settings(settings)


@dataclass(frozen=True)
class RankResult:
    day: date
    subscribers: list[Subscriber]  # in the order ranked
    picks: dict[int, list[Pick]]  # subscriber id -> picks in rank order
    embedded: int  # papers encoded first (missing or changed vectors of the window)


def rank(
    engine: Engine,
    settings: Settings,
    day: date,
    *,
    subscribers: Sequence[Subscriber] | None = None,
    exclude: Mapping[int, set[str] | frozenset[str]] | None = None,
    last_digest: Mapping[int, date] | None = None,
    embedder: Embedder | None = None,
) -> RankResult:
    """Picks for ``subscribers`` (default: every active subscriber) on ``day``.

    ``exclude[subscriber_id]``: arXiv ids already sent to that subscriber; ``last_digest[subscriber_id]``:
    date of their last digest (window: see ``digest_window``). Embeds the window's missing papers first;
    one model load and one encode call for all interest texts."""
    from digest.embed import Embedder, embed_missing
    from digest.profiles import build_profiles, candidate_matrix
    from digest.rank import rank_subscribers
    from digest.embed import stored_paper_vectors
    from digest.store.papers import papers_between
    from digest.store.subscribers import list_subscribers

    embedder = embedder or Embedder.from_settings(settings)
    last_digest = last_digest or {}
    with session_factory(engine)() as session:
        subs = list(subscribers) if subscribers is not None else list_subscribers(
            session, SubscriberStatus.active
        )
    windows = {
        s.id: digest_window(day, last_digest.get(s.id), settings.rank_window_days)
        for s in subs if s.id is not None
    }
    start = min((w[0] for w in windows.values()), default=day)
    embedded = embed_missing(engine, embedder, None, start, day)
    with session_factory(engine).begin() as session:
        papers = papers_between(session, start, day)
        vectors = stored_paper_vectors(session, embedder, [p.arxiv_id for p in papers])
        profiles = build_profiles(session, subs, embedder)
        matrix = candidate_matrix(session, papers, vectors)
    params = rank_params(settings)
    ranking = rank_subscribers(
        profiles, matrix, day, exclude=exclude,
        window_start={sid: w[0] for sid, w in windows.items()}, params=params,
    )
    picks = ranking.as_dict()
    # The sentence shown beside each "matches your interest X", by the same relevance (digest.explain).
    from digest.explain import explain_picks
    from digest.lexicon import store_lexicon

    with session_factory(engine).begin() as session:
        picks = explain_picks(
            session, embedder, picks, {p.arxiv_id: p for p in papers},
            lexicon=store_lexicon(session) if params.lexical_weight else None,
            lexical_weight=params.lexical_weight, floor=settings.rank_topup_min_relevance,
        )
    return RankResult(day, subs, picks, embedded)


# ------------------------------------------------------------------------------------- plan and send


@dataclass(frozen=True)
class PlanResult:
    day: date
    embedded: int
    planned: int
    skipped: int
    existing: int


def rank_with_history(
    engine: Engine, settings: Settings, day: date, subscribers: Sequence[Subscriber], *,
    embedder: Embedder | None = None,
) -> RankResult:
    """``rank`` with what the outbox knows: papers already mailed (or planned) to each subscriber are
    excluded, and each window reaches back to their last digest (at most ``rank_window_days``)."""
    from digest.store import outbox

    ids = [s.id for s in subscribers if s.id is not None]
    with session_factory(engine)() as session:
        exclude = outbox.sent_paper_ids(session, ids, before=day)
        last = outbox.last_digest_dates(session, ids, before=day)
    return rank(engine, settings, day, subscribers=subscribers, exclude=exclude, last_digest=last,
                embedder=embedder)


def plan(engine: Engine, settings: Settings, day: date, *, embedder: Embedder | None = None) -> PlanResult:
    """Rank every active subscriber who has no delivery for ``day`` yet and write their deliveries in one
    transaction. Papers already mailed (or planned) to a subscriber are never picked again, and the window
    reaches back to their last digest (at most ``rank_window_days``) so weekend papers are not lost.
    Idempotent: planning a date twice adds nothing."""
    from digest.store import outbox
    from digest.store.subscribers import list_subscribers

    with session_factory(engine)() as session:
        active = list_subscribers(session, SubscriberStatus.active)
        done = set(session.scalars(
            select(DeliveryRow.subscriber_id).where(DeliveryRow.digest_date == day)
        ))
    todo = [s for s in active if s.id not in done]
    if not todo:
        return PlanResult(day, 0, 0, 0, len(done))
    result = rank_with_history(engine, settings, day, todo, embedder=embedder)
    with session_factory(engine).begin() as session:
        report = outbox.plan_deliveries(session, day, {s.id: result.picks.get(s.id, []) for s in todo if s.id})
    return PlanResult(day, result.embedded, report.planned, report.skipped, report.existing + len(done))


def preview(
    engine: Engine, settings: Settings, day: date, out_dir: str | Path, *, emails: Sequence[str] | None = None,
    embedder: Embedder | None = None,
) -> list[Path]:
    """Write each subscriber's digest for ``day`` as an HTML file without sending or planning anything.
    Returns the paths written (``<out_dir>/<date>/<email>.html``, ``.txt`` for a subscriber who wants plain
    text only); subscribers with no picks get none."""
    from digest.render import build_context, render_digest
    from digest.signing import LinkSigner
    from digest.store.papers import papers_by_ids
    from digest.store.subscribers import get_subscriber, list_subscribers

    signer = LinkSigner.from_settings(settings)
    with session_factory(engine)() as session:
        subs = ([get_subscriber(session, e) for e in emails] if emails is not None
                else list_subscribers(session, SubscriberStatus.active))
    result = rank_with_history(engine, settings, day, subs, embedder=embedder)
    with session_factory(engine)() as session:
        papers = papers_by_ids(session, (p.arxiv_id for picks in result.picks.values() for p in picks))
    folder = Path(out_dir) / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sub in subs:
        picks = result.picks.get(sub.id or -1, [])
        if not picks:
            continue
        ctx = build_context(sub, day, [(papers[p.arxiv_id], p) for p in picks], settings, signer)
        rendered = render_digest(ctx)
        path = folder / (f"{sub.email}.txt" if sub.plain_text else f"{sub.email}.html")
        path.write_text(rendered.text if sub.plain_text else rendered.html, encoding="utf-8")
        written.append(path)
    return written


class _Spacer:
    """Spaces the backfill's listing requests by at least ``interval`` seconds, process-wide (HF allows
    about 100 anonymous requests per 5 minutes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")

    def wait(self, interval: float) -> None:
        with self._lock:
            delay = self._last + interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._last = time.monotonic()


_backfill_spacer = _Spacer()


@dataclass(frozen=True)
class BackfillDay:
    day: date
    status: str  # "stored", "skipped (already stored)", "empty"
    fetched: int = 0
    new: int = 0
    embedded: int = 0


def backfill_day(engine: Engine, settings: Settings, day: date, *, refresh: bool = False,
                 embedder: Embedder | None = None) -> BackfillDay:
    """Fetch, store and embed one past date. Resumable: a date already in the store is skipped (no
    request) unless ``refresh``. A listing that does not parse raises, as in the daily run."""
    from digest.store.papers import count_papers

    if not refresh:
        with session_factory(engine)() as session:
            if count_papers(session, day):
                return BackfillDay(day, "skipped (already stored)")
    _backfill_spacer.wait(settings.backfill_min_interval)
    listing = fetch(settings, day)
    if listing.is_empty:
        return BackfillDay(day, "empty")
    stored = store(engine, listing)
    n = embed(engine, settings, day, day, embedder=embedder)
    return BackfillDay(day, "stored", stored.fetched, stored.report.new, n)


def refetch_days(day: date, last_listed: date | None, max_days: int) -> list[date]:
    """The days before ``day`` that its run fetches again, oldest first: back to ``last_listed`` (the last
    day that had a listing, whose list may also have grown late), at most ``max_days`` days; all
    ``max_days`` when nothing is stored yet. Two empty days in a row are then both fetched again."""
    if max_days <= 0:
        return []
    start = day - timedelta(days=max_days)
    if last_listed is not None:
        start = max(start, last_listed)
    return [start + timedelta(days=i) for i in range((day - start).days)]


def late_listings(engine: Engine, settings: Settings, day: date) -> list[StoreResult]:
    """Fetch the days before ``day`` again (``refetch_days``, bounded by ``settings.refetch_max_days``) and
    store what was added after their own run: HF's list for a day keeps growing through the day (an early
    run may even see an empty day), and the catch-up window of the ranking then mails those papers.
    Failures here are logged and skipped: they must not stop today's digest."""
    import logging

    from digest.store.papers import latest_listing_date

    with session_factory(engine)() as session:
        last_listed = latest_listing_date(session, day)
    results = []
    for d in refetch_days(day, last_listed, settings.refetch_max_days):
        try:
            listing = fetch(settings, d)
        except Exception as e:  # noqa: BLE001 - best effort, today's listing is what must not fail
            logging.getLogger(__name__).warning("re-fetch of %s failed: %s", d, e)
            continue
        if not listing.is_empty:
            results.append(store(engine, listing))
    return results


def today(settings: Settings) -> date:
    """Today's date in the configured timezone (the schedule's)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.timezone)).date()


def scheduled_day(settings: Settings) -> date:
    """The listing day the scheduled run mails: ``today - lag_days`` in the configured timezone (the last
    complete day by default)."""
    return today(settings) - timedelta(days=settings.lag_days)


@dataclass
class DaySummary:
    """What one day's run did: logged and published as a Prefect artifact by the flow."""

    day: date
    listing: str = "ok"  # "ok", or "no listing (...)" for an empty day (see flows/daily.py)
    papers_fetched: int = 0
    papers_new: int = 0
    papers_late: int = 0  # new papers of earlier days, found by re-fetching them
    papers_embedded: int = 0
    deliveries_planned: int = 0
    deliveries_skipped: int = 0
    sent: int = 0
    failed: int = 0
    resent: int = 0
    suppressed: int = 0
    retried: int = 0
    pending: int = 0

    def rows(self) -> list[tuple[str, object]]:
        return [(k.replace("_", " "), v) for k, v in self.__dict__.items() if k != "day"]

    def markdown(self) -> str:
        lines = [f"# Daily digest {self.day.isoformat()}", "", "| what | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.rows()]
        return "\n".join(lines)
