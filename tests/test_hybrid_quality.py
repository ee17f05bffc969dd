"""The product's relevance on hand-graded short phrases (bench/labels, the real model, the real corpus): the
hybrid (cosine + w x BM25n) must beat cosine alone, through the same profiles and ranking as the pipeline.
This fails if the lexical half is dropped or not wired (issue 13)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import numpy as np
import pytest

from digest.bm25 import Lexicon, document
from digest.config import Settings
from digest.models import Paper, Subscriber
from digest.profiles import build_profiles
from digest.rank import PaperMatrix, RankParams, rank_subscribers

from .builders import CORPUS, ROOT

LABELS = ROOT / "bench" / "labels" / "short_phrases.json"
DAY = date(2026, 11, 2)
N_PHRASES = 16  # the first ones of the file, in its order (chosen before any method was run on them)


def _ndcg(ranked: list[int], grades: dict[int, int], k: int = 10) -> float:
    gain = [2.0 ** grades.get(i, 0) - 1 for i in ranked[:k]]
    dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gain))
    ideal = sorted((2.0 ** g - 1 for g in grades.values()), reverse=True)[:k]
    idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@pytest.mark.slow
def test_hybrid_beats_cosine_on_labelled_phrases() -> None:
    from digest.embed import Embedder, paper_text

    with open(CORPUS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    phrases = json.loads(LABELS.read_text(encoding="utf-8"))["phrases"][:N_PHRASES]
    papers = [Paper(f"c{i:04d}", r["title"], r["abstract"], (), DAY) for i, r in enumerate(rows)]
    emb = Embedder()
    vecs = emb.encode([paper_text(p.title, p.abstract) for p in papers])
    lexicon = Lexicon.from_texts(document(p.title, p.abstract) for p in papers)  # the store: the corpus
    matrix = PaperMatrix.from_papers(papers, {p.arxiv_id: v for p, v in zip(papers, vecs)}, lexicon=lexicon)
    subs = [Subscriber(f"s{k}@example.org", id=k + 1, interests=(p["phrase"],), max_papers=10)
            for k, p in enumerate(phrases)]
    profiles = build_profiles(None, subs, emb, feedback={}, lexicon=lexicon)
    shipped = RankParams.from_settings(Settings(_env_file=None))
    assert shipped.lexical_weight > 0
    # Relevance alone: no threshold, no top-up, no popularity, no diversity.
    pure = dataclasses.replace(shipped, min_relevance=-9.0, min_picks=0, trending_weight=0.0, age_weight=0.0,
                               rising_weight=0.0, mmr_lambda=1.0)
    ndcg = {}
    for name, params in (("hybrid", pure), ("cosine", dataclasses.replace(pure, lexical_weight=0.0))):
        ranking = rank_subscribers(profiles, matrix, DAY, params=params)
        ndcg[name] = np.array([
            _ndcg([int(p.arxiv_id[1:]) for p in ranking.picks(s.id or 0)],
                  {r["index"]: r["grade"] for r in ph["relevant"]})
            for s, ph in zip(subs, phrases)
        ])
    gain = ndcg["hybrid"] - ndcg["cosine"]
    assert gain.mean() > 0.03, (ndcg["hybrid"].mean(), ndcg["cosine"].mean())
    assert (gain > 0).sum() > (gain < 0).sum()
