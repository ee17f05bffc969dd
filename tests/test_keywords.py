"""Include / exclude keywords match whole words, case-insensitively, and may be phrases (issue 13):
``--include RL`` must not let in "world" or "early"."""

from __future__ import annotations

from datetime import date

import numpy as np

from digest.rank import PaperMatrix, Profile, RankParams, rank_subscribers

DAY = date(2026, 8, 18)
TEXTS = (
    "World models for early exit in robot learning",  # 0: "rl" only inside words
    "Scaling RL for LLM reasoning",  # 1: RL
    "RL-tuned agents, a survey",  # 2: RL before a hyphen
    "Learning World Models from video",  # 3: the phrase, other case, plural
    "A world-class model of modelling",  # 4: both words, not the phrase
    "Offline rl with transformers",  # 5: rl, lower case
    "Earl and the girl: no keyword here",  # 6
)


def _pick_ids(include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> set[int]:
    n = len(TEXTS)
    vecs = np.eye(n, 8, dtype=np.float32)
    papers = PaperMatrix(tuple(f"2608.{i:05d}" for i in range(n)), vecs, np.arange(n)[::-1].copy(),
                         np.full(n, np.datetime64(DAY, "D")), tuple(t.lower() for t in TEXTS))
    prof = Profile(1, np.ones((1, 8), np.float32) / np.sqrt(8), ("interest: x",), np.zeros((0, 8), np.float32),
                   include_keywords=include, exclude_keywords=exclude, max_papers=n)
    picks = rank_subscribers([prof], papers, DAY, params=RankParams(min_relevance=-1.0, min_picks=0)).picks(1)
    return {int(p.arxiv_id.split(".")[1]) for p in picks}


def test_include_is_a_whole_word_in_any_case() -> None:
    assert _pick_ids(include=("RL",)) == {1, 2, 5}
    assert _pick_ids(include=("rl",)) == {1, 2, 5}


def test_include_a_phrase() -> None:
    assert _pick_ids(include=("world model",)) == {0, 3}
    assert _pick_ids(include=("World Model", "offline RL")) == {0, 3, 5}


def test_exclude_is_a_whole_word() -> None:
    assert _pick_ids(exclude=("RL",)) == {0, 3, 4, 6}
    assert _pick_ids(exclude=("world models",)) == {1, 2, 4, 5, 6}
    assert _pick_ids(exclude=("early",)) == {1, 2, 3, 4, 5, 6}
