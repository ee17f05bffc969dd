"""bf16 done right (issue 13): the precision is part of the vector cache key, so switching DIGEST_EMBED_BF16
never mixes precisions; and what bf16 changes in the rankings of the fixtures."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sqlalchemy import inspect, text

from digest import pipeline
from digest.config import Settings
from digest.sources.huggingface import load_listing_file
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.embeddings import (
    BF16,
    FP32,
    interest_vectors,
    paper_vectors,
    papers_needing_embedding,
    save_interest_vectors,
    save_paper_vectors,
)
from digest.store.tables import PaperRow

from .builders import HF_FIXTURES

SMALL = HF_FIXTURES / "api_daily_papers_2025-06-20.collector.json"  # 2 papers
LISTING = HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json"
DAY = date(2026, 8, 18)


def test_vectors_of_each_precision_are_kept_apart(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(SMALL)
    pipeline.store(engine, listing)
    a, b = (p.arxiv_id for p in listing.papers)
    v32, v16 = np.full(4, 0.5, np.float32), np.array([1, 0, 0, 0], np.float32)
    with session_factory(engine).begin() as session:
        rows = [session.get(PaperRow, a)]
        save_paper_vectors(session, "m", rows, v32[None, :])
        assert [r.arxiv_id for r in papers_needing_embedding(session, "m")] == [b]
        assert sorted(r.arxiv_id for r in papers_needing_embedding(session, "m", precision=BF16)) == sorted([a, b])
        save_paper_vectors(session, "m", rows, v16[None, :], BF16)
        save_interest_vectors(session, "m", {"robots": v32})
        save_interest_vectors(session, "m", {"robots": v16}, BF16)
    with session_factory(engine)() as session:
        np.testing.assert_array_equal(paper_vectors(session, "m", [a, b])[a], v32)
        np.testing.assert_array_equal(paper_vectors(session, "m", [a, b], BF16)[a], v16)
        assert paper_vectors(session, "m", [a], FP32).keys() == {a}
        np.testing.assert_array_equal(interest_vectors(session, "m", ["robots"])["robots"], v32)
        np.testing.assert_array_equal(interest_vectors(session, "m", ["robots"], BF16)["robots"], v16)


def test_migration_0006_keeps_old_vectors_as_fp32(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO papers (arxiv_id, title, abstract, authors, listing_date, upvotes, num_comments, "
            "ai_keywords, content_hash, first_seen, updated_at) VALUES ('2608.00001', 't', 'a', '[]', "
            "'2026-08-18', 0, 0, '[]', 'h', '2026-08-18 00:00:00', '2026-08-18 00:00:00')"))
        conn.execute(text("INSERT INTO paper_embeddings (arxiv_id, model, content_hash, dim, vector, created_at) "
                          "VALUES ('2608.00001', 'm', 'h', 1, :v, '2026-08-18 00:00:00')"), {"v": b"\0\0\0\0"})
    upgrade(engine)
    for table, key in (("paper_embeddings", "arxiv_id"), ("interest_embeddings", "text_hash")):
        assert inspect(engine).get_pk_constraint(table)["constrained_columns"] == [key, "model", "precision"]
    assert "lexicon_stats" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT arxiv_id, precision FROM paper_embeddings")).all() == [("2608.00001", "fp32")]


@pytest.mark.slow
def test_bf16_run_reencodes_and_ranks_like_fp32(settings: Settings) -> None:
    """Switching bf16 on re-encodes every paper (nothing fp32 is read for it); on the real listing the
    top-10 of every test interest is the same set as in fp32 (orders may swap near-ties: see the setting)."""
    from digest.embed import Embedder, embed_missing, stored_paper_vectors
    from digest.profiles import build_profiles
    from digest.rank import PaperMatrix, rank_subscribers
    from digest.models import Subscriber

    engine = pipeline.open_store(settings)
    listing = load_listing_file(LISTING)
    pipeline.store(engine, listing)
    fp32, bf16 = Embedder(), Embedder(bf16=True)
    assert (fp32.precision, bf16.precision) == (FP32, BF16)
    assert embed_missing(engine, fp32) == len(listing.papers)
    assert embed_missing(engine, bf16) == len(listing.papers)
    assert embed_missing(engine, bf16) == 0
    interests = ["GUI agents", "text-to-image diffusion", "speech", "video generation", "reinforcement learning",
                 "3D worlds", "document parsing", "LLM reasoning", "robotics", "multimodal benchmarks"]
    subs = [Subscriber(f"s{i}@example.org", id=i + 1, interests=(t,)) for i, t in enumerate(interests)]
    tops = {}
    with session_factory(engine).begin() as session:
        for emb in (fp32, bf16):
            vecs = stored_paper_vectors(session, emb, [p.arxiv_id for p in listing.papers])
            assert len(vecs) == len(listing.papers)
            profiles = build_profiles(session, subs, emb, feedback={})
            ranking = rank_subscribers(profiles, PaperMatrix.from_papers(listing.papers, vecs), DAY)
            tops[emb.precision] = {s.id: [p.arxiv_id for p in ranking.picks(s.id or 0)] for s in subs}
    for sid in tops[FP32]:
        assert set(tops[FP32][sid]) == set(tops[BF16][sid]), sid
