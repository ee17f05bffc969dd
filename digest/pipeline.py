"""The day as plain functions (fetch, store, ...), each taking and returning plain data.

``flows/`` wraps these in Prefect tasks; the CLI calls them directly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.models import Listing, Pick, PickColumns, Subscriber, SubscriberStatus, UpsertReport
from digest.sources import huggingface
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.bulk import chunks
from digest.store.papers import upsert_papers
from digest.store.tables import DeliveryRow, utcnow

if TYPE_CHECKING:  # heavy imports (torch) only when embedding
    from digest.embed import Embedder
    from digest.rank import RankParams, Ranking

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """What the embed step encoded: papers (their own vectors) and the sentences of their abstracts (the
    explanations' cache, ``digest.explain``)."""

    papers: int
    sentences: int


def embed(
    engine: Engine,
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    arxiv_ids: Sequence[str] | None = None,
    embedder: Embedder | None = None,
) -> EmbedResult:
    """The embed step: encode the stored papers (listing dates ``[start, end]`` and/or ``arxiv_ids``; all
    when none) that have no vector for ``settings.model_name`` or whose title/abstract changed, and split
    and encode the sentences of those whose abstracts have none cached (``digest.explain.embed_sentences``),
    so that planning only reads caches. Each is batched with one bulk insert per batch; only what is
    missing is encoded, and the model is loaded only then."""
    from digest.embed import Embedder, embed_missing
    from digest.explain import embed_sentences

    embedder = embedder or Embedder.from_settings(settings)
    papers = embed_missing(engine, embedder, arxiv_ids, start, end)
    return EmbedResult(papers, embed_sentences(engine, embedder, arxiv_ids, start, end))


@dataclass(frozen=True)
class Windows:
    """What each subscriber's digest of a day may offer, as the ranking takes it: papers listed from
    ``start[id]`` to the day, never one in ``exclude[id]``."""

    start: dict[int, date]
    exclude: dict[int, set[str] | frozenset[str]]


def digest_windows(session: Session, settings: Settings, day: date, subscribers: Sequence[Subscriber]) -> Windows:
    """Per subscriber, the stored papers their digest of ``day`` considers: every paper listed since their
    last digest (``cadence.window_start``: a brand-new subscriber starts at ``day``, or at the week ending
    on it when weekly), and every paper stored *after their last digest was ranked*, whatever its listing
    date: Hugging Face keeps adding papers to a day's list after its run, and those late papers are mailed
    late, not lost. Never further back than ``cadence.reach_days`` (``DIGEST_RANK_WINDOW_DAYS``), and never
    a paper of any digest of theirs, whatever its status. A paper that was stored and weighed for their
    last digest but not picked is not offered again: each digest brings what is new since the last."""
    from digest import cadence
    from digest.store import outbox
    from digest.store.papers import listed_between

    subs = [sub for sub in subscribers if sub.id is not None]
    ids = [sub.id for sub in subs if sub.id is not None]
    last = outbox.last_digests(session, ids, before=day)
    earliest = {sub.id: day - timedelta(days=cadence.reach_days(sub.frequency, settings.rank_window_days) - 1)
                for sub in subs}
    lo = min(earliest.values(), default=day)
    offered = outbox.offered_paper_ids(session, ids, other_than=day, listed_from=lo)
    papers = listed_between(session, lo, day)
    listed = {a: d for a, d, _ in papers}
    start: dict[int, date] = {}
    exclude: dict[int, set[str] | frozenset[str]] = {}
    # (earliest, last digest date, when it was ranked) -> first late listing date, papers weighed then
    late_of: dict[tuple[date, date, datetime], tuple[date | None, frozenset[str]]] = {}
    for sub in subs:
        sid = sub.id
        assert sid is not None
        prev = last.get(sid)
        start[sid] = cadence.window_start(day, sub.frequency, prev.digest_date if prev else None,
                                          settings.rank_window_days)
        exclude[sid] = offered[sid]
        if prev is None or prev.digest_date < earliest[sid]:
            continue
        key = (earliest[sid], prev.digest_date, prev.planned_at)
        if key not in late_of:  # shared by every subscriber ranked in the same run (one set, no copies)
            lo_k, last_k, ranked_at = key
            first = min((d for _, d, seen in papers if lo_k <= d <= last_k and seen > ranked_at), default=None)
            late_of[key] = (first, frozenset(a for a, d, seen in papers
                                             if first is not None and first <= d <= last_k and seen <= ranked_at))
        first, weighed = late_of[key]
        if first is None or first >= start[sid]:
            continue
        start[sid] = first
        # What they were offered was stored before it was ranked, so inside the window it is among the
        # weighed papers: the shared set serves alone unless a later-dated digest offered a paper.
        extra = {a for a in offered[sid] if a not in weighed and first <= listed.get(a, day + timedelta(1)) <= day}
        exclude[sid] = weighed | extra if extra else weighed
    return Windows(start, exclude)
def embed_interests(engine: Engine, settings: Settings, texts: Sequence[str], *, embedder: Embedder | None = None,
                    progress: Callable[[int], None] | None = None) -> int:
    """Encode and cache the interest texts that have no vector yet (``digest.embed.embed_interests``): what
    every door that writes interests calls, so a day's ranking finds them cached. Returns how many."""
    from digest.embed import Embedder, embed_interests as embed_texts

    return embed_texts(engine, embedder or Embedder.from_settings(settings), texts, progress)


def candidate_start(settings: Settings, day: date) -> date:
    """The first listing date any subscriber's window for ``day`` can reach (the longest cadence's,
    ``cadence.reach_days``): the papers of ``[candidate_start, day]`` are the candidates of the whole day's
    ranking, as one matrix (embedded before it)."""
    from digest.cadence import PERIOD_DAYS, reach_days

    longest = max(reach_days(f, settings.rank_window_days) for f in PERIOD_DAYS)
    return day - timedelta(days=max(longest, 1) - 1)


def rank_params(settings: Settings) -> RankParams:
    from digest.rank import RankParams

    return RankParams.from_settings(settings)


# Subscribers ranked, and planned, together: the memory of a day's planning is bounded by this, not by the
# number of subscribers (100k subscribers are ten chunks).
PLAN_CHUNK = 10_000


@dataclass(frozen=True)
class RankResult:
    day: date
    subscribers: list[Subscriber]  # in the order ranked
    picks: dict[int, list[Pick]]  # subscriber id -> picks in rank order
    embedded: int  # papers encoded first (missing or changed vectors of the window)
    interests_embedded: int = 0  # interest texts encoded first (not cached yet)
    sentences_embedded: int = 0  # sentences of picked papers encoded for the explanations (not cached yet)


class _DayRanking:
    """What ranking a day needs once, whoever is ranked: the candidate papers as one matrix (their missing
    vectors encoded first), the parameters, and the embedder. ``chunk`` ranks a group of subscribers: their
    missing interest vectors are encoded first, then the ranking reads stored vectors only."""

    def __init__(self, engine: Engine, settings: Settings, day: date, embedder: Embedder | None) -> None:
        from digest.embed import Embedder, embed_missing, stored_paper_vectors
        from digest.lexicon import store_lexicon
        from digest.profiles import candidate_matrix
        from digest.store.papers import papers_between

        self.engine, self.settings, self.day = engine, settings, day
        self.sessions = session_factory(engine)
        self.embedder = embedder or Embedder.from_settings(settings)
        start = candidate_start(settings, day)
        self.papers_embedded = embed_missing(engine, self.embedder, None, start, day)
        self.interests_embedded = 0
        self.sentences_embedded = 0  # the embed step caches them: only papers it did not reach count here
        with self.sessions.begin() as session:  # begin: the lexicon brought up to date is saved
            papers = papers_between(session, start, day)
            vectors = stored_paper_vectors(session, self.embedder, [p.arxiv_id for p in papers])
            self.matrix = candidate_matrix(session, papers, vectors)
            self.lexicon = store_lexicon(session)
        self.papers = {p.arxiv_id: p for p in papers}
        self.params = rank_params(settings)

    def chunk(self, subs: Sequence[Subscriber], exclude: Mapping[int, set[str] | frozenset[str]],
              window_start: Mapping[int, date]) -> Ranking:
        from digest.embed import embed_interests
        from digest.profiles import build_profiles
        from digest.store.embeddings import interest_vectors
        from digest.rank import rank_subscribers

        texts = [t for s in subs for t in (*s.interests, *s.negative_interests)]
        self.interests_embedded += embed_interests(self.engine, self.embedder, texts)
        with self.sessions.begin() as session:  # begin: a seed paper without a vector is encoded and stored
            vectors = interest_vectors(session, self.embedder.name, texts, self.embedder.precision)
            profiles = build_profiles(session, subs, self.embedder, lexicon=self.lexicon, text_vectors=vectors)
        starts = {s.id: min(window_start.get(s.id, self.day), self.day) for s in subs if s.id is not None}
        return rank_subscribers(profiles, self.matrix, self.day, exclude=exclude, window_start=starts,
                                params=self.params)

    def _explaining(self) -> dict[str, Any]:
        return {"lexicon": self.lexicon if self.params.lexical_weight else None,
                "lexical_weight": self.params.lexical_weight, "floor": self.settings.rank_topup_min_relevance}

    def explain(self, picks: Mapping[int, Sequence[Pick]]) -> dict[int, list[Pick]]:
        """``picks`` with the sentence shown beside each "matches your interest X", chosen by the same
        relevance (``digest.explain``); the abstracts' sentence vectors are cached in the store."""
        from digest.explain import explain_picks

        with self.sessions.begin() as session:
            explained, encoded = explain_picks(session, self.embedder, picks, self.papers, **self._explaining())
        self.sentences_embedded += encoded
        return explained

    def explain_columns(self, cols: PickColumns) -> PickColumns:
        """``explain`` for the columns planning writes."""
        from dataclasses import replace as with_

        from digest.explain import explain_columns

        with self.sessions.begin() as session:
            evidence, encoded = explain_columns(session, self.embedder, cols.arxiv_id, cols.reason, self.papers,
                                                **self._explaining())
        self.sentences_embedded += encoded
        return with_(cols, evidence=evidence)


def rank(
    engine: Engine,
    settings: Settings,
    day: date,
    *,
    subscribers: Sequence[Subscriber] | None = None,
    exclude: Mapping[int, set[str] | frozenset[str]] | None = None,
    window_start: Mapping[int, date] | None = None,
    embedder: Embedder | None = None,
) -> RankResult:
    """Picks for ``subscribers`` (default: every active subscriber) on ``day``, with no history: nothing
    excluded and only ``day``'s papers unless told (``rank_with_history`` is what a digest gets).

    ``exclude[subscriber_id]``: arXiv ids never to pick for that subscriber; ``window_start[subscriber_id]``:
    the first listing date of their window (default ``day``). The candidate papers' and the interests'
    missing vectors are encoded first (one model load); the ranking itself reads stored vectors only."""
    from digest.store.subscribers import list_subscribers

    with session_factory(engine)() as session:
        subs = list(subscribers) if subscribers is not None else list_subscribers(
            session, SubscriberStatus.active
        )
    ranking = _DayRanking(engine, settings, day, embedder)
    picks: dict[int, list[Pick]] = {}
    for part in chunks(subs, PLAN_CHUNK):
        picks.update(ranking.chunk(part, exclude or {}, window_start or {}).as_dict())
    picks = ranking.explain(picks)
    return RankResult(day, subs, picks, ranking.papers_embedded, ranking.interests_embedded,
                      ranking.sentences_embedded)


# ------------------------------------------------------------------------------------- plan and send


@dataclass(frozen=True)
class PlanResult:
    day: date
    embedded: int  # papers encoded first
    planned: int
    skipped: int
    existing: int
    interests_embedded: int = 0  # interest texts encoded first (not cached when they were written)
    sentences_embedded: int = 0  # sentences of picked papers the embed step had not cached (logged: the exception)


def rank_with_history(
    engine: Engine, settings: Settings, day: date, subscribers: Sequence[Subscriber], *,
    embedder: Embedder | None = None,
) -> RankResult:
    """``rank`` with what the outbox knows (``digest_windows``): each subscriber's window reaches back to
    their last digest, papers stored late for earlier days come too, and nothing of an earlier digest of
    theirs is picked again. Cadence is the caller's business (``due``)."""
    with session_factory(engine)() as session:
        windows = digest_windows(session, settings, day, subscribers)
    return rank(engine, settings, day, subscribers=subscribers, exclude=windows.exclude,
                window_start=windows.start, embedder=embedder)


def due(subscriber: Subscriber, day: date) -> bool:
    """Whether ``subscriber``'s cadence gives them a digest for ``day`` (``digest.cadence``)."""
    from digest.cadence import is_due

    return is_due(subscriber.frequency, subscriber.weekday, day)


def weekly_due(engine: Engine, day: date) -> int:
    """How many active weekly subscribers have their digest on ``day``."""
    from digest.store.subscribers import count_due

    with session_factory(engine)() as session:
        return count_due(session, day, weekly_only=True)


def plan(engine: Engine, settings: Settings, day: date, *, embedder: Embedder | None = None,
         empty_day: bool = False, chunk_size: int = PLAN_CHUNK) -> PlanResult:
    """Rank every active subscriber due on ``day`` (daily ones, and weekly ones on their weekday) who has
    no delivery for ``day`` yet, and write their deliveries. Each digest offers what is new to that
    subscriber since their last one (``digest_windows``); nothing is offered twice. ``empty_day``: ``day``
    listed nothing, so only the weekly digests due are planned (they cover a week).

    Streams the subscribers in chunks of ``chunk_size``: per chunk, the subscribers and their outbox
    history are read once, their missing interest vectors encoded, the ranking's arrays written as two bulk
    inserts in one transaction. Idempotent: planning a date twice adds nothing, and a chunk another planner
    wrote first is left as it is."""
    from digest.store import outbox
    from digest.store.subscribers import due_ids, subscribers_by_ids

    sessions = session_factory(engine)
    with sessions() as session:
        due_now = due_ids(session, day, weekly_only=empty_day)
        done = set(session.scalars(
            select(DeliveryRow.subscriber_id).where(DeliveryRow.digest_date == day,
                                                    DeliveryRow.kind == outbox.DeliveryKind.digest.value)
        ))
    todo = [i for i in due_now if i not in done]
    existing = len(due_now) - len(todo)
    if not todo:
        return PlanResult(day, 0, 0, 0, len(done))
    ranked_at = utcnow()  # before the ranking reads the papers: anything stored later is late for these digests
    ranking = _DayRanking(engine, settings, day, embedder)
    planned = skipped = 0
    for ids in chunks(todo, max(chunk_size, 1)):
        with sessions() as session:
            subs = subscribers_by_ids(session, ids)
            windows = digest_windows(session, settings, day, subs)
        result = ranking.chunk(subs, windows.exclude, windows.start)
        with sessions.begin() as session:
            report = outbox.plan_deliveries(session, day, ranking.explain_columns(result.columns()),
                                            ranked_at=ranked_at)
        planned, skipped, existing = planned + report.planned, skipped + report.skipped, existing + report.existing
    if ranking.sentences_embedded:
        log.warning(
            "plan %s encoded %d sentences of picked papers that the embed step had not cached (papers stored "
            "by an older version, or planned without the embed step: pipeline.embed)", day,
            ranking.sentences_embedded)
    return PlanResult(day, ranking.papers_embedded, planned, skipped, existing, ranking.interests_embedded,
                      ranking.sentences_embedded)


def preview(
    engine: Engine, settings: Settings, day: date, out_dir: str | Path, *, emails: Sequence[str] | None = None,
    embedder: Embedder | None = None,
) -> list[Path]:
    """Write each subscriber's digest for ``day`` as an HTML file without sending or planning anything:
    every active subscriber due that day, or those of ``emails`` (one not due that day gets none). Returns
    the paths written (``<out_dir>/<date>/<email>.html``, ``.txt`` for a subscriber who wants plain text
    only); subscribers with no picks get none."""
    from digest.render import build_context, render_digest
    from digest.signing import LinkSigner
    from digest.store.papers import papers_by_ids
    from digest.store.subscribers import get_subscriber, list_due

    signer = LinkSigner.from_settings(settings)
    with session_factory(engine)() as session:
        subs = ([get_subscriber(session, e) for e in emails] if emails is not None
                else list_due(session, day))
    subs = [s for s in subs if due(s, day)]
    if not subs:
        return []
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
    """What a backfill did for one date (``flows/backfill.py``)."""

    day: date
    status: str  # "stored", "skipped (already stored)", "empty"
    fetched: int = 0
    new: int = 0
    embedded: int = 0  # papers
    sentences: int = 0  # sentences of their abstracts
    previews: int = 0
    planned: int = 0
    sent: int = 0


def is_stored(engine: Engine, day: date) -> bool:
    """Whether listing day ``day`` has papers in the store: a backfill skips it (resumable)."""
    from digest.store.papers import count_papers

    with session_factory(engine)() as session:
        return bool(count_papers(session, day))


def backfill_throttle(settings: Settings) -> None:
    """Wait until the backfill may send its next listing request: requests are spaced by at least
    ``backfill_min_interval`` seconds, process-wide."""
    _backfill_spacer.wait(settings.backfill_min_interval)


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
    from digest.store.papers import latest_listing_date

    with session_factory(engine)() as session:
        last_listed = latest_listing_date(session, day)
    results = []
    for d in refetch_days(day, last_listed, settings.refetch_max_days):
        try:
            listing = fetch(settings, d)
        except Exception as e:  # noqa: BLE001 - best effort, today's listing is what must not fail
            log.warning("re-fetch of %s failed: %s", d, e)
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
    sentences_embedded: int = 0  # of the abstracts, for the explanations (the embed step's, and plan's exceptions)
    interests_embedded: int = 0
    deliveries_planned: int = 0
    deliveries_skipped: int = 0
    sent: int = 0
    failed: int = 0
    resent: int = 0
    suppressed: int = 0
    retried: int = 0
    pending: int = 0
    task_runner: str = "thread"  # where the batch tasks ran: "thread", "dask (2 workers)" (flows/runners.py)
    send_processes: int = 0  # how many processes ran the send tasks (Dask workers, or the flow's own)

    def rows(self) -> list[tuple[str, object]]:
        return [(k.replace("_", " "), v) for k, v in self.__dict__.items() if k != "day"]

    def markdown(self) -> str:
        lines = [f"# Daily digest {self.day.isoformat()}", "", "| what | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.rows()]
        return "\n".join(lines)
