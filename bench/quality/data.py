"""What the ranking benchmark reads: the corpus and its labels (tests/fixtures, bench/labels), the real
HF listings for the keyword task, and the deterministic days and upvotes of the subscriber-day simulation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from digest.models import Paper
from digest.sources.huggingface import load_listing_file

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers-a.jsonl"
LABELS = ROOT / "bench" / "labels" / "short_phrases.json"
HF_FIXTURES = ROOT / "tests" / "fixtures" / "hf"
PACKAGED_LISTING = ROOT / "digest" / "data" / "listing_2026-08-18.json"

DAY_SIZE = 28  # 224 papers = 8 days of 28 (HF lists ~20-60 papers a day)
FIRST_DAY = date(2026, 11, 2)
SEED = 13  # the number: any fixed seed; it only has to stay the same between runs


@dataclass(frozen=True)
class Corpus:
    titles: tuple[str, ...]
    abstracts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.titles)


@dataclass(frozen=True)
class Phrase:
    text: str
    difficulty: str
    grades: dict[int, int]  # corpus index -> 1 or 2 (absent = 0)


def load_corpus() -> Corpus:
    titles, abstracts = [], []
    with open(CORPUS, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            titles.append(o["title"])
            abstracts.append(o["abstract"])
    return Corpus(tuple(titles), tuple(abstracts))


def load_labels(corpus: Corpus) -> list[Phrase]:
    """The graded phrases; fails loudly when an index and its title disagree (the corpus changed)."""
    data = json.loads(LABELS.read_text(encoding="utf-8"))
    phrases = []
    for p in data["phrases"]:
        grades: dict[int, int] = {}
        for r in p["relevant"]:
            i, g = int(r["index"]), int(r["grade"])
            if corpus.titles[i] != r["title"]:
                raise SystemExit(f"{LABELS}: paper {i} is {corpus.titles[i]!r} in the corpus, not {r['title']!r}")
            if g not in (1, 2) or i in grades:
                raise SystemExit(f"{LABELS}: bad or repeated grade for paper {i} of {p['phrase']!r}")
            grades[i] = g
        phrases.append(Phrase(p["phrase"], p.get("difficulty", ""), grades))
    return phrases


def grade_matrix(phrases: list[Phrase], n: int) -> np.ndarray:
    """(P, n) int: the grade of every (phrase, paper) pair, 0 where unlisted."""
    G = np.zeros((len(phrases), n), dtype=np.int64)
    for k, p in enumerate(phrases):
        for i, g in p.grades.items():
            G[k, i] = g
    return G


def load_pooled_listings() -> tuple[list[Paper], dict[str, list[str]], str]:
    """Real HF papers, deduplicated by arXiv id, with the listing day each first appeared in.

    tests/fixtures/hf when the repository has it, else the listing packaged with digest (one day)."""
    files = (
        sorted(f for f in HF_FIXTURES.iterdir() if f.suffix in (".json", ".html"))
        if HF_FIXTURES.is_dir() else [PACKAGED_LISTING]
    )
    seen: dict[str, Paper] = {}
    days: dict[str, list[str]] = {}
    for f in files:
        listing = load_listing_file(f)
        for p in listing.papers:
            if p.arxiv_id not in seen:
                seen[p.arxiv_id] = p
                days.setdefault(listing.listing_date.isoformat(), []).append(p.arxiv_id)
    where = str(HF_FIXTURES.relative_to(ROOT)) if HF_FIXTURES.is_dir() else str(PACKAGED_LISTING.relative_to(ROOT))
    return list(seen.values()), days, where


def corpus_upvotes(n: int) -> np.ndarray:
    """The corpus has no upvotes: each paper gets one drawn (fixed seed) from the upvotes of the real
    listing packaged with digest, so trending has a realistic spread. They are independent of relevance,
    which is the pessimistic case for a trending weight (real popularity may correlate with quality)."""
    real = np.array([p.upvotes for p in load_listing_file(PACKAGED_LISTING).papers], dtype=np.int64)
    return np.random.default_rng(SEED).choice(real, size=n, replace=True)


@dataclass(frozen=True)
class Day:
    """One simulated listing day: the corpus indices listed that day."""

    date: date
    candidates: np.ndarray  # (m,) int


def make_days(n: int) -> list[Day]:
    """A fixed permutation of the corpus cut into days of DAY_SIZE papers (the corpus has no dates)."""
    perm = np.random.default_rng(SEED).permutation(n)
    return [
        Day(FIRST_DAY + timedelta(days=k), np.sort(perm[lo : lo + DAY_SIZE]))
        for k, lo in enumerate(range(0, n, DAY_SIZE))
    ]
