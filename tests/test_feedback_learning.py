"""Feedback that learns gently (issue 13): a vote moves the ranking by a bounded, decaying amount, only around
the voted paper, and never outweighs the declared interests. Real model, real listings, real SQLite file:
the votes are made on the 2025-10-03 listing, the digest is the one of 2026-08-18 (the next one mailed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from sqlalchemy import Engine, select

from digest import pipeline
from digest.config import Settings
from digest.models import Pick, Subscriber
from digest.profiles import VOTE_HALF_LIFE_DAYS, profile_from_vectors, vote_weight
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.feedback import record_feedback, votes_for
from digest.store.subscribers import add_subscriber
from digest.store.tables import FeedbackRow

from .builders import HF_FIXTURES, bare_settings, stored_id

if TYPE_CHECKING:
    from digest.embed import Embedder

VOTE_DAY = HF_FIXTURES / "api_daily_papers_2025-10-03.collector.json"
NEXT_DAY = HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json"
DAY = date(2026, 8, 18)
COMPUTER_USE_AGENTS = "2510.02250"  # The Unreasonable Effectiveness of Scaling Agents for Computer Use
VIDEO_GENERATION = "2510.02283"  # Self-Forcing++: Towards Minute-Scale High-Quality Video Generation
TEXT_TO_IMAGE = "text-to-image diffusion models"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from digest.embed import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[Engine, Settings]]:
    """Both listings stored and embedded once for the module; each test adds its own subscribers."""
    from digest.embed import embed_missing

    folder: Path = tmp_path_factory.mktemp("feedback")
    settings = bare_settings(database_url=f"sqlite:///{folder / 'digest.db'}")
    engine = pipeline.open_store(settings)
    for f in (VOTE_DAY, NEXT_DAY):
        pipeline.store(engine, load_listing_file(f))
    embed_missing(engine, embedder)  # the papers' vectors only: the few picked papers' sentences are encoded as needed
    yield engine, settings
    engine.dispose()


def _subscriber(engine: Engine, email: str, **fields: object) -> Subscriber:
    with session_factory(engine).begin() as session:
        return add_subscriber(session, email, **fields)  # type: ignore[arg-type]


def _picks(engine: Engine, settings: Settings, sub: Subscriber, embedder: Embedder) -> list[Pick]:
    result = pipeline.rank(engine, settings, DAY, subscribers=[sub], embedder=embedder)
    return result.picks[stored_id(sub)]


def _vote(engine: Engine, sub: Subscriber, arxiv_id: str, value: int) -> None:
    with session_factory(engine).begin() as session:
        record_feedback(session, stored_id(sub), arxiv_id, value)


@pytest.mark.slow
def test_one_more_like_this_does_not_take_over_the_next_digest(store: tuple[Engine, Settings],
                                                              embedder: Embedder) -> None:
    """The issue's case: one "more like this" turned 6 of the next day's 10 picks into "liked"."""
    engine, settings = store
    sub = _subscriber(engine, "liker@example.org", interests=[TEXT_TO_IMAGE], max_papers=10)
    before = _picks(engine, settings, sub, embedder)
    _vote(engine, sub, COMPUTER_USE_AGENTS, 1)  # an agents paper: the next day is full of agents papers
    after = _picks(engine, settings, sub, embedder)
    liked = [p for p in after if p.reason.startswith("liked:")]
    assert len(liked) <= 1, [(p.arxiv_id, p.reason) for p in after]
    assert [p.arxiv_id for p in after[:3]] == [p.arxiv_id for p in before[:3]]  # the interest leads
    assert sum(TEXT_TO_IMAGE in p.reason for p in after) >= len(after) - 1


@pytest.mark.slow
def test_a_like_lifts_papers_like_that_one_a_bounded_amount(store: tuple[Engine, Settings],
                                                            embedder: Embedder) -> None:
    """The vote does something: the papers most like the liked one score higher, by at most like_weight."""
    engine, settings = store
    sub = _subscriber(engine, "agents@example.org", interests=["multimodal agents"], max_papers=29)
    before = {p.arxiv_id: p.score for p in _picks(engine, settings, sub, embedder)}
    _vote(engine, sub, COMPUTER_USE_AGENTS, 1)
    after = {p.arxiv_id: p.score for p in _picks(engine, settings, sub, embedder)}
    gains = {a: after[a] - before[a] for a in before if a in after}
    cap = settings.rank_like_weight
    assert max(gains.values()) > 0.01
    assert all(g <= cap + 1e-3 for g in gains.values()), gains
    assert sum(g > 1e-4 for g in gains.values()) < len(gains)  # local: not every paper moves


@pytest.mark.slow
def test_one_less_like_this_does_not_pull_down_the_whole_interest(store: tuple[Engine, Settings],
                                                                  embedder: Embedder) -> None:
    """The issue's case: a "less like this" pulled down every pick of the subscriber's own interest."""
    engine, settings = store
    sub = _subscriber(engine, "disliker@example.org", interests=["AI agents"], max_papers=10)
    before = _picks(engine, settings, sub, embedder)
    _vote(engine, sub, COMPUTER_USE_AGENTS, -1)
    after = _picks(engine, settings, sub, embedder)
    kept = {p.arxiv_id for p in before} & {p.arxiv_id for p in after}
    assert len(before) >= 5
    assert len(kept) >= 0.75 * len(before), ([p.arxiv_id for p in before], [(p.arxiv_id, p.reason) for p in after])
    assert [p.arxiv_id for p in after[:3]] == [p.arxiv_id for p in before[:3]]
    assert all(p.reason == "interest: AI agents" for p in after)
    drops = [b.score - a.score for b in before for a in after if a.arxiv_id == b.arxiv_id]
    assert max(drops) > 0.005  # it does push the papers most like the disliked one
    assert max(drops) <= settings.rank_dislike_weight + 1e-3


@pytest.mark.slow
def test_a_dislike_pushes_a_near_duplicate_more_than_a_distant_paper(store: tuple[Engine, Settings],
                                                                      embedder: Embedder) -> None:
    engine, settings = store
    sub = _subscriber(engine, "video@example.org", interests=["video generation"], max_papers=29)
    before = {p.arxiv_id: p.score for p in _picks(engine, settings, sub, embedder)}
    _vote(engine, sub, VIDEO_GENERATION, -1)
    after = {p.arxiv_id: p.score for p in _picks(engine, settings, sub, embedder)}
    from digest.embed import stored_paper_vectors

    with session_factory(engine)() as session:
        vecs = stored_paper_vectors(session, embedder, [VIDEO_GENERATION, *before])
    sim = {a: float(vecs[a] @ vecs[VIDEO_GENERATION]) for a in before}
    near = max(sim, key=sim.__getitem__)
    far = min(sim, key=sim.__getitem__)
    assert before[near] - after.get(near, -1.0) > before[far] - after[far] + 0.01


def test_repeating_a_vote_changes_nothing_not_even_its_age(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(VOTE_DAY)
    pipeline.store(engine, listing)
    sub = _subscriber(engine, "ada@example.org", interests=["agents"])
    sid = stored_id(sub)
    _vote(engine, sub, COMPUTER_USE_AGENTS, 1)
    with session_factory(engine)() as session:
        first = votes_for(session, [sid])[sid]
    _vote(engine, sub, COMPUTER_USE_AGENTS, 1)
    _vote(engine, sub, COMPUTER_USE_AGENTS + "v2", 1)
    with session_factory(engine)() as session:
        assert votes_for(session, [sid])[sid] == first
        assert len(list(session.scalars(select(FeedbackRow)))) == 1
    _vote(engine, sub, COMPUTER_USE_AGENTS, -1)  # a changed mind is a new vote
    with session_factory(engine)() as session:
        (aid, value, when), = votes_for(session, [sid])[sid]
    assert (aid, value) == (COMPUTER_USE_AGENTS, -1) and when >= first[0][2]


def test_vote_weight_halves_and_old_votes_fade_out() -> None:
    now = datetime(2026, 8, 18, tzinfo=timezone.utc)
    assert vote_weight(1, now, now) == 1.0 and vote_weight(-1, None, now) == -1.0
    assert vote_weight(1, now - timedelta(days=VOTE_HALF_LIFE_DAYS), now) == pytest.approx(0.5)
    assert vote_weight(-1, now - timedelta(days=2 * VOTE_HALF_LIFE_DAYS), now) == pytest.approx(-0.25)
    sub = Subscriber("a@x.org", id=1, interests=("agents",))
    vec = {"agents": np.ones(4, np.float32) / 2}
    papers = {"a": np.eye(4, dtype=np.float32)[0], "b": np.eye(4, dtype=np.float32)[1]}
    prof = profile_from_vectors(sub, vec, papers, [("a", 1, now - timedelta(days=10)),
                                                   ("b", -1, now - timedelta(days=200))], 4, now=now)
    assert prof.vote_reasons == ("liked: a",)  # 200 days old: below 1/16, dropped
    assert prof.vote_weights == (pytest.approx(0.5 ** (10 / VOTE_HALF_LIFE_DAYS)),)
    assert prof.seen == {"a", "b"}  # voted papers are never picked, old vote or not
    assert prof.positives.shape == (1, 4)  # a vote is not a positive: it has no quota of picks
