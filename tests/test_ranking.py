"""Embeddings, profiles and ranking: the real model, the real listing of 2026-08-18, a real SQLite file."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from digest import pipeline
from digest.config import Settings
from digest.models import Paper, Pick, PickColumns, Subscriber
from digest.rank import PaperMatrix, Profile, RankParams, rank_subscribers
from digest.explain import split_sentences
from digest.sources.huggingface import load_listing_file
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.db import current_revision
from digest.store.embeddings import paper_vectors
from digest.store.feedback import feedback_for, record_feedback
from digest.store.papers import upsert_papers
from digest.store.subscribers import add_subscriber

from .builders import HF_FIXTURES, stored_id

if TYPE_CHECKING:
    from digest.embed import Embedder

DAY = date(2026, 8, 18)
LISTING = HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json"
SMALL = HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json"  # 2 papers
DayPapers = tuple[tuple[Paper, ...], PaperMatrix]  # the listing of DAY, and its papers embedded

GUI_AGENT = "2608.15930"  # UI-Mate: ... Foundation GUI Agents ...
T2I_DIFFUSION = "2608.16887"  # An Empirical Study of Training Pixel-Space Text-to-Image Diffusion Models
VIDEO_TALK = "2608.16143"  # AnyTalk: Speech Animation ... Leveraging a Video Generation Model
OCR = "2608.12898"  # NaviDC-OCR: Navigating Document Parsing ...


def rank(*args: Any, **kwargs: Any) -> dict[int, list[Pick]]:
    """``{subscriber_id: [Pick, ...]}`` in rank order; the columns planning writes say the same."""
    ranking = rank_subscribers(*args, **kwargs)
    picks = ranking.as_dict()
    assert ranking.columns() == PickColumns.from_picks(picks)
    return picks


# ------------------------------------------------------------------------------------ no model needed


def test_migrations_0001_to_0002_from_empty(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    upgrade(engine, "0002")
    assert current_revision(engine) == "0002"
    tables = set(inspect(engine).get_table_names())
    assert {"paper_embeddings", "interest_embeddings", "feedback"} <= tables
    pk = inspect(engine).get_pk_constraint("paper_embeddings")["constrained_columns"]
    assert pk == ["arxiv_id", "model"]
    upgrade(engine)  # on to head


def test_feedback_latest_vote_wins_and_cascades(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(SMALL)
    pipeline.store(engine, listing)
    a, b = (p.arxiv_id for p in listing.papers)
    with session_factory(engine).begin() as session:
        sid = stored_id(add_subscriber(session, "ada@example.org"))
        record_feedback(session, sid, a, 1)
        record_feedback(session, sid, b + "v2", -1)
        record_feedback(session, sid, a, -1)
        with pytest.raises(ValueError):
            record_feedback(session, sid, a, 0)
    with session_factory(engine)() as session:
        assert sorted(feedback_for(session, [sid])[sid]) == sorted([(a, -1), (b, -1)])
        assert feedback_for(session, [999]) == {}


def _unit(rows: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def test_rank_pure_exclude_window_and_trending() -> None:
    rng = np.random.default_rng(0)
    n = 40
    vecs = _unit(rng.normal(size=(n, 16)))
    ids = tuple(f"2608.{i:05d}" for i in range(n))
    days = np.array([DAY if i % 2 == 0 else date(2026, 8, 16) for i in range(n)], dtype="datetime64[D]")
    papers = PaperMatrix(ids, vecs, rng.integers(0, 100, n), days, tuple("" for _ in ids))
    interested = Profile(1, vecs[[3, 4]] + 0.01, ("interest: a", "interest: b"), np.zeros((0, 16), np.float32),
                         max_papers=5)
    trending = Profile(2, np.zeros((0, 16), np.float32), (), np.zeros((0, 16), np.float32), max_papers=5)
    out = rank([interested, trending], papers, DAY, exclude={1: {ids[4]}, 2: {ids[0]}},
               window_start={1: date(2026, 8, 16)}, params=RankParams(min_relevance=-1.0))
    first = out[1]
    assert [p.rank for p in first] == [1, 2, 3, 4, 5]
    assert first[0].arxiv_id == ids[3] and first[0].reason == "interest: a"
    assert ids[4] not in {p.arxiv_id for p in first}  # already sent
    trend_ids = [p.arxiv_id for p in out[2]]
    today = [i for i in range(n) if i % 2 == 0 and i != 0]  # subscriber 2: today only, minus the sent one
    expected = sorted(today, key=lambda i: (-papers.upvotes[i], i))[:5]
    assert trend_ids == [ids[i] for i in expected]
    assert all(p.reason == "trending" for p in out[2])


@pytest.mark.parametrize("floor", [2.0, 0.45])
def test_rank_pure_min_picks_top_up_matches_reference(floor: float) -> None:
    """The vectorised top-up against a plain loop: many subscribers with 0..k relevant picks, windows,
    sent papers, keywords and a negative vector, all in one chunk and in chunks of 3. The top-up takes the
    most relevant remaining papers down to ``topup_min_relevance`` (``floor``; 2.0: none), then the most
    upvoted."""
    rng = np.random.default_rng(1)
    n, dim = 60, 16
    vecs = _unit(rng.normal(size=(n, dim)))
    ids = tuple(f"2608.{i:05d}" for i in range(n))
    days = np.array([DAY if i % 3 else date(2026, 8, 16) for i in range(n)], dtype="datetime64[D]")
    texts = tuple("alpha" if i % 5 == 0 else "beta" for i in range(n))
    papers = PaperMatrix(ids, vecs, rng.integers(0, 20, n), days, texts)  # many ties in upvotes
    empty = np.zeros((0, dim), np.float32)
    profiles, exclude, starts = [], {}, {}
    for sid in range(24):
        k = 1 + sid % 2
        pos = _unit(vecs[rng.choice(n, k, replace=False)] + rng.normal(scale=0.3, size=(k, dim)))
        neg = _unit(vecs[[sid % n]] + 0.01) if sid % 4 == 0 else empty
        profiles.append(Profile(sid, pos, tuple(f"interest: {sid}.{i}" for i in range(k)), neg,
                                exclude_keywords=("alpha",) if sid % 3 == 0 else (), max_papers=2 + sid % 5))
        exclude[sid] = {ids[(sid * 7) % n], ids[(sid * 11) % n]}
        if sid % 2:
            starts[sid] = date(2026, 8, 16)
    trending_order = sorted(range(n), key=lambda i: (-papers.upvotes[i], i))
    filled = {"closest": 0, "trending": 0}
    for chunk in (8192, 3):
        base = RankParams(min_relevance=0.6, chunk_size=chunk, topup_min_relevance=floor)
        plain = rank(profiles, papers, DAY, exclude=exclude, window_start=starts,
                     params=dataclasses.replace(base, min_picks=0))
        out = rank(profiles, papers, DAY, exclude=exclude, window_start=starts,
                   params=dataclasses.replace(base, min_picks=4))
        for prof in profiles:
            sid = prof.subscriber_id
            got, before = out[sid], plain[sid]
            assert got[: len(before)] == before  # the relevant picks are untouched
            start = np.datetime64(starts.get(sid, DAY), "D")
            picked = set(_ids(before))
            neg_sim = (vecs @ prof.negatives.T).max(axis=1) if len(prof.negatives) else np.zeros(n)
            sims = vecs @ prof.positives.T
            rel = sims.max(axis=1) - np.maximum(neg_sim - 0.25, 0.0)
            allowed = [
                i for i in trending_order
                if start <= days[i] <= np.datetime64(DAY, "D") and ids[i] not in exclude[sid]
                and not (prof.exclude_keywords and texts[i] == "alpha") and ids[i] not in picked
                and neg_sim[i] <= 0.25
            ]
            closest = sorted((i for i in allowed if rel[i] >= floor), key=lambda i: (-rel[i], i))
            rest = [i for i in allowed if i not in closest]
            want = max(min(4, prof.max_papers) - len(before), 0)
            extra = got[len(before):]
            expected = (closest + rest)[:want]
            assert _ids(extra) == [ids[i] for i in expected]
            for p, i in zip(extra, expected):
                if i in closest:
                    assert p.reason == f"closest: interest: {sid}.{int(sims[i].argmax())}"
                    filled["closest"] += 1
                else:
                    assert p.reason == "trending"
                    filled["trending"] += 1
            assert [p.rank for p in got] == list(range(1, len(got) + 1))
    assert filled["trending"] > 0
    assert (filled["closest"] > 0) == (floor < 1)


# --------------------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from digest.embed import Embedder

    e = Embedder()
    e.encode(["warm up"])
    return e


@pytest.fixture(scope="module")
def day_papers(embedder: Embedder) -> DayPapers:
    listing = load_listing_file(LISTING)
    from digest.embed import paper_text

    vecs = embedder.encode([paper_text(p.title, p.abstract) for p in listing.papers])
    return listing.papers, PaperMatrix.from_papers(listing.papers, dict(zip([p.arxiv_id for p in listing.papers], vecs)))


def _profile(embedder: Embedder, sub: Subscriber) -> Profile:
    from digest.profiles import build_profiles

    return build_profiles(None, [sub], embedder, feedback={})[0]


def _ids(picks: Iterable[Pick]) -> list[str]:
    return [p.arxiv_id for p in picks]


@pytest.mark.slow
def test_model_loaded_once_and_vectors_unit(embedder: Embedder) -> None:
    from digest.embed import Embedder, load_model

    assert load_model("all-MiniLM-L6-v2") is embedder.model is Embedder().model
    v = embedder.encode(["video diffusion", "GUI agents", "video diffusion"])
    assert v.dtype == np.float32 and v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[2])


@pytest.mark.slow
def test_interest_gets_its_topic_first(embedder: Embedder, day_papers: DayPapers) -> None:
    _, papers = day_papers
    gui = _profile(embedder, Subscriber("a@x.org", id=1, interests=("GUI agents",)))
    t2i = _profile(embedder, Subscriber("b@x.org", id=2, interests=("text-to-image diffusion models",)))
    out = rank([gui, t2i], papers, DAY)
    assert out[1][0].arxiv_id == GUI_AGENT and out[1][0].reason == "interest: GUI agents"
    assert out[2][0].arxiv_id == T2I_DIFFUSION
    assert all(p.reason == "interest: text-to-image diffusion models" for p in out[2])
    assert len(out[1]) <= 10


@pytest.mark.slow
def test_multi_interest_gets_both_topics(embedder: Embedder, day_papers: DayPapers) -> None:
    _, papers = day_papers
    both = _profile(embedder, Subscriber("a@x.org", id=1, interests=("GUI agents", "text-to-image diffusion models"),
                                         max_papers=4))
    picks = rank([both], papers, DAY)[1]
    assert {GUI_AGENT, T2I_DIFFUSION} <= set(_ids(picks[:2]))
    reasons = [p.reason for p in picks]
    assert reasons.count("interest: GUI agents") == 2 and reasons.count("interest: text-to-image diffusion models") == 2


@pytest.mark.slow
def test_negative_interest_and_exclude_keyword_remove_papers(embedder: Embedder, day_papers: DayPapers) -> None:
    _, papers = day_papers
    base = Subscriber("a@x.org", id=1, interests=("text-to-image diffusion",))
    plain = rank([_profile(embedder, base)], papers, DAY)[1]
    assert VIDEO_TALK in _ids(plain) and OCR in _ids(plain)
    neg = _profile(embedder, dataclasses.replace(base, negative_interests=("video generation",)))
    assert VIDEO_TALK not in _ids(rank([neg], papers, DAY)[1])
    kw = _profile(embedder, dataclasses.replace(base, exclude_keywords=("ocr",)))
    kw_ids = _ids(rank([kw], papers, DAY)[1])
    assert OCR not in kw_ids and T2I_DIFFUSION in kw_ids
    inc = _profile(embedder, dataclasses.replace(base, include_keywords=("Pixel-Space",)))
    assert _ids(rank([inc], papers, DAY)[1]) == [T2I_DIFFUSION]


@pytest.mark.slow
def test_already_sent_is_never_picked(embedder: Embedder, day_papers: DayPapers) -> None:
    listing, papers = day_papers
    gui = _profile(embedder, Subscriber("a@x.org", id=1, interests=("GUI agents",), max_papers=30))
    trend = _profile(embedder, Subscriber("b@x.org", id=2, max_papers=30))
    sent = {GUI_AGENT, "2608.15265"}
    out = rank([gui, trend], papers, DAY, exclude={1: sent, 2: sent})
    assert not sent & set(_ids(out[1])) and not sent & set(_ids(out[2]))
    assert len(out[2]) == len(listing) - 2


@pytest.mark.slow
def test_no_interest_gets_trending_order(embedder: Embedder, day_papers: DayPapers) -> None:
    listing, papers = day_papers
    picks = rank([_profile(embedder, Subscriber("a@x.org", id=1))], papers, DAY)[1]
    upvotes = {p.arxiv_id: p.upvotes for p in listing}
    got = [upvotes[a] for a in _ids(picks)]
    assert len(picks) == 10 and got == sorted(upvotes.values(), reverse=True)[:10]
    assert picks[0].arxiv_id == "2608.15265" and all(p.reason == "trending" for p in picks)


@pytest.mark.slow
def test_embed_once_rerun_zero_and_changed_abstract(settings: Settings, embedder: Embedder) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(SMALL)
    pipeline.store(engine, listing)
    first = pipeline.embed(engine, settings, embedder=embedder)
    assert first.papers == 2 and first.sentences == sum(len(split_sentences(p.abstract)) for p in listing.papers)
    assert pipeline.embed(engine, settings, embedder=embedder) == pipeline.EmbedResult(0, 0)
    changed = dataclasses.replace(listing.papers[0], abstract="We revise the abstract: " + listing.papers[0].abstract[:300])
    with session_factory(engine).begin() as session:
        before = paper_vectors(session, embedder.name, [changed.arxiv_id])[changed.arxiv_id]
        upsert_papers(session, [changed, listing.papers[1]])
    again = pipeline.embed(engine, settings, embedder=embedder)  # the changed paper, vector and sentences
    assert again == pipeline.EmbedResult(1, len(split_sentences(changed.abstract)))
    assert pipeline.embed(engine, settings, embedder=embedder) == pipeline.EmbedResult(0, 0)
    with session_factory(engine)() as session:
        after = paper_vectors(session, embedder.name, [changed.arxiv_id])[changed.arxiv_id]
    assert not np.allclose(before, after)


@pytest.mark.slow
def test_pipeline_rank_with_seed_feedback_and_cli_json(settings: Settings, embedder: Embedder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    engine = pipeline.open_store(settings)
    pipeline.store(engine, load_listing_file(LISTING))
    with session_factory(engine).begin() as session:
        seed = stored_id(add_subscriber(session, "seed@example.org", seed_papers=[T2I_DIFFUSION + "v1"], max_papers=3))
        liker = stored_id(add_subscriber(session, "liker@example.org", interests=["GUI agents"], max_papers=5))
        add_subscriber(session, "new@example.org", max_papers=2)
    r = pipeline.rank(engine, settings, DAY, embedder=embedder, exclude={liker: {"2608.13900"}})
    assert r.embedded == 29
    seed_picks = r.picks[seed]
    assert seed_picks and T2I_DIFFUSION not in _ids(seed_picks)  # the seed itself is known
    # The seed explains every pick (below the threshold on this 29-paper day: the closest ones).
    assert all(p.reason in (f"seed paper: {T2I_DIFFUSION}", f"closest: seed paper: {T2I_DIFFUSION}")
               for p in seed_picks)
    assert "2608.13900" not in _ids(r.picks[liker])
    with session_factory(engine).begin() as session:
        record_feedback(session, liker, GUI_AGENT, 1)
    r2 = pipeline.rank(engine, settings, DAY, embedder=embedder)
    assert r2.embedded == 0
    liked = r2.picks[liker]
    # The liked paper is never sent again, and one vote does not take over the digest (issue 13): the
    # picks still come from the declared interest, "liked" only where the vote lifted a paper over the line.
    assert GUI_AGENT not in _ids(liked)
    assert sum(p.reason == f"liked: {GUI_AGENT}" for p in liked) <= 1
    assert liked[0].reason == "interest: GUI agents"

    from digest import cli

    monkeypatch.setattr(cli, "settings", lambda: settings)
    result = CliRunner().invoke(cli.app, ["rank", "--date", DAY.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [x["subscriber"] for x in payload] == ["seed@example.org", "liker@example.org", "new@example.org"]
    assert [p["reason"] for p in payload[2]["picks"]] == ["trending", "trending"]
    assert set(payload[2]["picks"][0]) == {"paper_id", "score", "reason", "evidence"}
    one = CliRunner().invoke(cli.app, ["rank", "--date", DAY.isoformat(), "--subscriber", "new@example.org"])
    assert one.exit_code == 0 and "new@example.org" in one.output and "seed@" not in one.output


@pytest.mark.slow
def test_no_match_gets_min_picks_trending(embedder: Embedder, day_papers: DayPapers, settings: Settings) -> None:
    """An interest that matches nothing on the day: topped up with the most upvoted allowed papers
    (honouring the exclude keyword and the already-sent set); rank_min_picks=0 sends nothing."""
    listing, papers = day_papers
    sub = Subscriber("a@x.org", id=1, interests=("marine biology of coral reefs",),
                     exclude_keywords=("vibeworlding",))
    prof = _profile(embedder, sub)
    assert (papers.vectors @ prof.positives.T).max() < 0.25  # really matches nothing
    sent = {"2608.16859"}  # second most upvoted
    params = pipeline.rank_params(settings)
    assert params.min_picks == 3
    picks = rank([prof], papers, DAY, exclude={1: sent}, params=params)[1]
    upvotes = {p.arxiv_id: p.upvotes for p in listing}
    allowed = [i for i in np.lexsort((np.arange(len(papers)), -papers.upvotes))
               if "vibeworlding" not in papers.texts[i] and papers.ids[i] not in sent]
    assert _ids(picks) == [papers.ids[i] for i in allowed[:3]]
    assert "2608.15265" not in _ids(picks) and not sent & set(_ids(picks))  # VibeWorlding: excluded
    assert all(p.reason == "trending" for p in picks) and [p.rank for p in picks] == [1, 2, 3]
    got = [upvotes[a] for a in _ids(picks)]
    assert got == sorted(got, reverse=True)
    # Never a paper a negative interest pushes down.
    neg = _profile(embedder, dataclasses.replace(sub, negative_interests=("GUI agents",)))
    neg_ids = _ids(rank([neg], papers, DAY, exclude={1: sent}, params=params)[1])
    assert GUI_AGENT in _ids(picks) and GUI_AGENT not in neg_ids and len(neg_ids) == 3
    # max_papers below min_picks caps the top-up.
    small = _profile(embedder, dataclasses.replace(sub, max_papers=2))
    assert _ids(rank([small], papers, DAY, exclude={1: sent}, params=params)[1]) == _ids(picks)[:2]
    off = pipeline.rank_params(settings.model_copy(update={"rank_min_picks": 0}))
    assert off.min_picks == 0
    assert rank([prof], papers, DAY, exclude={1: sent}, params=off)[1] == []


@pytest.mark.slow
def test_few_matches_are_topped_up_after_the_relevant_ones(embedder: Embedder, day_papers: DayPapers) -> None:
    _, papers = day_papers
    gui = _profile(embedder, Subscriber("a@x.org", id=1, interests=("GUI agents",)))
    strict = RankParams(min_relevance=0.5, min_picks=0)
    relevant = rank([gui], papers, DAY, params=strict)[1]
    assert 1 <= len(relevant) < 5
    picks = rank([gui], papers, DAY, params=dataclasses.replace(strict, min_picks=5))[1]
    assert picks[: len(relevant)] == relevant and len(picks) == 5
    extra = picks[len(relevant):]
    assert all(p.reason == "trending" for p in extra) and not set(_ids(extra)) & set(_ids(relevant))
    order = [papers.ids[i] for i in np.lexsort((np.arange(len(papers)), -papers.upvotes))]
    assert _ids(extra) == [a for a in order if a not in set(_ids(relevant))][: len(extra)]


@pytest.mark.parametrize("all_at_once", [True, False])
def test_rank_vector_paths_agree(all_at_once: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranking's shortcuts give the same picks: interests shared by key or all distinct (stacked in
    profile order: one reduction instead of gathers), all similarities at once or per chunk, candidates
    taken directly or by partition; with the lexical half, negatives, votes and a rising paper."""
    from digest import rank as rank_module
    from digest.bm25 import Lexicon

    rng = np.random.default_rng(3)
    n, dim = 50, 16
    vecs = _unit(rng.normal(size=(n, dim)))
    ids = tuple(f"2608.{i:05d}" for i in range(n))
    words = ["agents", "diffusion", "speech", "retrieval", "graphs", "robots", "video", "proofs"]
    texts = [" ".join(rng.choice(words, 6)) for _ in range(n)]
    lex = Lexicon.from_texts(texts)
    papers = PaperMatrix(ids, vecs, rng.integers(0, 50, n), np.full(n, np.datetime64(DAY, "D")),
                         tuple(texts), terms=lex.papers(texts), rising=rng.random(n).astype(np.float32),
                         rising_reasons=tuple(f"rising: +{i} upvotes since 2026-08-17 07:00 UTC" for i in range(n)))
    topics = _unit(rng.normal(size=(6, dim)))
    empty = np.zeros((0, dim), np.float32)
    shared, distinct = [], []
    for sid in range(40):
        k = 1 + sid % 3
        pick = rng.choice(6, k, replace=False)
        reasons = tuple(f"interest: {words[i]}" for i in pick)
        fields = dict(
            positives=topics[pick], reasons=reasons, negatives=_unit(vecs[[sid]]) if sid % 5 == 0 else empty,
            max_papers=2 + sid % 7, terms=tuple(lex.query(words[i]) for i in pick),
            votes=vecs[[(sid * 3) % n]] if sid % 4 == 0 else None,
            vote_weights=(1.0 if sid % 8 == 0 else -0.7,) if sid % 4 == 0 else (),
            vote_reasons=(f"liked: {ids[(sid * 3) % n]}",) if sid % 4 == 0 else (),
        )
        shared.append(Profile(sid, **fields))
        distinct.append(Profile(sid, keys=tuple(f"{sid}/{r}" for r in reasons), **fields))
    base = RankParams(min_relevance=0.7, lexical_weight=1.0, rising_weight=0.05, topup_min_relevance=0.1,
                      min_picks=3)
    want = rank(shared, papers, DAY, params=base)  # all similarities at once, shared vectors
    assert any(p.reason.startswith("rising:") for ps in want.values() for p in ps)
    assert any(p.reason.startswith("closest:") for ps in want.values() for p in ps)
    if not all_at_once:
        monkeypatch.setattr(rank_module, "ALL_AT_ONCE", 0)
    for profiles in (shared, distinct):
        for chunk in (8192, 7):
            for params in (base, dataclasses.replace(base, candidates_per_pick=1)):
                got = rank(profiles, papers, DAY, params=dataclasses.replace(params, chunk_size=chunk))
                if params is base:
                    assert got == want
                else:
                    assert {k: [p.arxiv_id for p in v] for k, v in got.items()}.keys() == want.keys()


def test_rank_nothing_passes_for_anyone() -> None:
    """A chunk in which no subscriber has a single paper over the threshold: top-up only, no error."""
    vecs = np.eye(4, 8, dtype=np.float32)
    papers = PaperMatrix(tuple(f"2608.{i:05d}" for i in range(4)), vecs, np.array([5, 9, 1, 3]),
                         np.full(4, np.datetime64(DAY, "D")), ("",) * 4)
    prof = Profile(1, np.eye(1, 8, 7, dtype=np.float32), ("interest: x",), np.zeros((0, 8), np.float32))
    picks = rank([prof], papers, DAY, params=RankParams(min_relevance=0.9, min_picks=2))[1]
    assert [(p.arxiv_id, p.reason) for p in picks] == [("2608.00001", "trending"), ("2608.00000", "trending")]
