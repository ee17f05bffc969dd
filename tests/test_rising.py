"""The "rising" signal (issue 13): upvote velocity from the stored upvote history, a small weight in the
score, and the reason "rising fast: +N upvotes since T" where it decides a pick."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone

import numpy as np
from sqlalchemy import update

from digest import pipeline
from digest.config import Settings
from digest.models import Listing
from digest.rank import PaperMatrix, Profile, RankParams, rank_subscribers
from digest.render import reason_text
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.tables import UpvoteRow
from digest.store.upvotes import upvote_rises

from .builders import HF_FIXTURES

DAY = date(2026, 8, 18)
T0 = datetime(2026, 8, 18, 7, 0, tzinfo=timezone.utc)


def _observe(engine, listing: Listing, at: datetime, bump: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Store the listing again with some papers' upvotes raised, as a fetch at ``at`` would."""
    papers = tuple(dataclasses.replace(p, upvotes=p.upvotes + bump.get(p.arxiv_id, 0)) for p in listing.papers)
    pipeline.store(engine, Listing(listing.listing_date, papers, listing.source))
    with session_factory(engine).begin() as session:  # the fetch happened at ``at``
        session.execute(update(UpvoteRow).where(UpvoteRow.observed_at > at).values(observed_at=at))


def test_upvote_rises_from_the_history(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json")
    a, b, c = (p.arxiv_id for p in listing.papers[:3])
    _observe(engine, listing, T0 - timedelta(hours=72), {})  # first seen three days ago
    _observe(engine, listing, T0 - timedelta(hours=24), {a: 10, b: 2})
    _observe(engine, listing, T0, {a: 40, b: 4, c: 1})
    with session_factory(engine)() as session:
        rises = upvote_rises(session, [p.arxiv_id for p in listing.papers], T0 + timedelta(minutes=5))
        late = upvote_rises(session, [a], T0 + timedelta(days=5))
    gained, since, per_hour = rises[a]
    assert (gained, since) == (40, T0 - timedelta(hours=72))  # base: the last observation before the 48 h
    assert per_hour == 40 / 72
    assert rises[b][0] == 4 and rises[c] == (1, T0 - timedelta(hours=72), 1 / 72)
    assert set(rises) == {a, b, c}  # the others gained nothing
    assert late == {}  # nothing observed in the last 48 h: not rising


def test_rising_decides_between_near_equals_and_says_so() -> None:
    n, dim = 4, 8
    vecs = np.eye(n, dim, dtype=np.float32)
    interest = np.ones((1, dim), np.float32)
    interest[0, :n] = (0.9, 0.88, 0.1, 0.87)
    interest /= np.linalg.norm(interest)
    since = datetime(2026, 8, 17, 7, 0, tzinfo=timezone.utc)
    base = PaperMatrix(tuple(f"2608.{i:05d}" for i in range(n)), vecs, np.array([10, 10, 10, 10]),
                       np.full(n, np.datetime64(DAY, "D")), ("",) * n)
    papers = dataclasses.replace(
        base, rising=np.array([0.0, 1.0, 0.0, 0.0], np.float32),
        rising_reasons=("", f"rising: +120 upvotes since {since:%Y-%m-%d %H:%M} UTC", "", ""),
    )
    prof = Profile(1, interest, ("interest: x",), np.zeros((0, dim), np.float32), max_papers=1)
    params = RankParams(min_relevance=0.0, min_picks=0, trending_weight=0.0, age_weight=0.0, rising_weight=0.05)
    (pick,) = rank_subscribers([prof], papers, DAY, params=params).picks(1)
    assert pick.arxiv_id == "2608.00001" and pick.reason == "rising: +120 upvotes since 2026-08-17 07:00 UTC"
    assert reason_text(pick.reason) == "Rising fast: +120 upvotes since 2026-08-17 07:00 UTC"
    # Without the weight the most relevant paper wins; when every good paper fits, rising decides nothing.
    (plain,) = rank_subscribers([prof], papers, DAY, params=dataclasses.replace(params, rising_weight=0.0)).picks(1)
    assert plain.arxiv_id == "2608.00000"
    roomy = dataclasses.replace(prof, max_papers=4)
    picks = rank_subscribers([roomy], papers, DAY, params=dataclasses.replace(params, min_relevance=0.3)).picks(1)
    assert [p.reason for p in picks] == ["interest: x"] * 3


def test_from_papers_scales_velocity_and_ignores_small_gains() -> None:
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json")  # 2 papers
    a, b = (p.arxiv_id for p in listing.papers)
    vecs = {a: np.ones(4, np.float32) / 2, b: np.ones(4, np.float32) / 2}
    since = datetime(2025, 6, 19, 8, 30, tzinfo=timezone.utc)
    m = PaperMatrix.from_papers(listing.papers, vecs, rises={a: (240, since, 10.0), b: (3, since, 3.0)})
    assert m.rising is not None and m.rising.tolist() == [1.0, 0.0]  # 10 an hour is full; +3 is no rise
    assert m.rising_reasons == ("rising: +240 upvotes since 2025-06-19 08:30 UTC", "")
    half = PaperMatrix.from_papers(listing.papers[:1], vecs, rises={a: (24, since, 1.0)})
    assert half.rising is not None and 0.2 < float(half.rising[0]) < 0.4  # log1p(1) / log1p(10)


def test_candidate_matrix_reads_the_rising_signal_from_the_store(settings: Settings) -> None:
    """What pipeline.rank hands the ranking: the stored history becomes each paper's rising value and reason."""
    engine = pipeline.open_store(settings)
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json")
    a = listing.papers[0].arxiv_id
    _observe(engine, listing, datetime.now(timezone.utc) - timedelta(hours=30), {})
    _observe(engine, listing, datetime.now(timezone.utc) - timedelta(minutes=1), {a: 60})
    from digest.profiles import candidate_matrix
    from digest.store.papers import papers_between

    with session_factory(engine).begin() as session:
        papers = papers_between(session, listing.listing_date, listing.listing_date)
        m = candidate_matrix(session, papers, {p.arxiv_id: np.ones(4, np.float32) / 2 for p in papers})
    j = m.ids.index(a)
    assert m.rising is not None and m.rising[j] > 0.3
    assert m.rising_reasons[j].startswith("rising: +60 upvotes since ")
