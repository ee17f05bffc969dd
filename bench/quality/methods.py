"""The ranking methods compared by bench/ranking_quality.py. Adding a method is adding one function.

Two kinds:

* a *scorer* maps ``Queries`` to a (Q, N) score matrix over the whole reference corpus (higher = more
  relevant). Scorers rank the corpus in the retrieval tasks; ``top_picks`` turns one into a picker.
* a *picker* is what a digest does: for a ``Day`` (the corpus papers listed that day) it returns, for each
  query, the papers it would mail, in mail order, each flagged as a filler (sent for popularity, not
  relevance) or not. The shipped ranking is a picker: it calls ``digest.rank.rank_subscribers``.

Every signal a method may need is precomputed in ``Queries`` against the whole corpus (cosine, BM25,
BM25n, TF-IDF), so a method never depends on the day's pool except through what it chooses to do with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from digest.bm25 import Lexicon
from digest.models import Subscriber
from digest.profiles import profile_from_vectors
from digest.rank import TRENDING, PaperMatrix, RankParams, rank_subscribers

from .data import Day
from .lexical import Lexical

MAX_PAPERS = 10  # every simulated subscriber's max_papers

Picks = list[list[tuple[int, bool]]]  # per query: (corpus index, is_filler), in mail order


@dataclass(frozen=True)
class Reference:
    """The documents ranked: their text (what is embedded), vectors, upvotes and ids."""

    texts: tuple[str, ...]
    vectors: np.ndarray  # (N, d) unit rows
    upvotes: np.ndarray  # (N,) int
    lexical: Lexical
    tfidf: TfidfVectorizer
    lexicon: Lexicon  # the product's BM25 reference (digest.bm25), here over the reference documents

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(f"bench-{i:04d}" for i in range(len(self.texts)))

    @classmethod
    def build(cls, texts: Sequence[str], vectors: np.ndarray, upvotes: np.ndarray | None = None) -> Reference:
        tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", ngram_range=(1, 2), min_df=1)
        tfidf.fit(texts)
        ups = upvotes if upvotes is not None else np.zeros(len(texts), dtype=np.int64)
        return cls(tuple(texts), vectors, ups, Lexical(texts), tfidf, Lexicon.from_texts(texts))


@dataclass(frozen=True)
class Queries:
    """Queries (interest phrases, seed papers, ...) with every signal against the whole reference."""

    texts: tuple[str, ...]
    vectors: np.ndarray  # (Q, d)
    cos: np.ndarray  # (Q, N) cosine (MiniLM)
    bm25: np.ndarray  # (Q, N) raw BM25
    bm25n: np.ndarray  # (Q, N) BM25 / the query's maximum attainable BM25, in [0, 1)
    tfidf: np.ndarray  # (Q, N) TF-IDF cosine
    exclude: tuple[int | None, ...]  # a reference index never to return for that query (a seed itself)

    @classmethod
    def build(cls, ref: Reference, texts: Sequence[str], vectors: np.ndarray,
              exclude: Sequence[int | None] | None = None) -> Queries:
        texts = tuple(texts)
        tf = (ref.tfidf.transform(list(texts)) @ ref.tfidf.transform(list(ref.texts)).T).toarray()
        return cls(
            texts=texts, vectors=vectors, cos=(vectors @ ref.vectors.T).astype(np.float32),
            bm25=ref.lexical.bm25(texts), bm25n=ref.lexical.bm25n(texts), tfidf=tf.astype(np.float32),
            exclude=tuple(exclude) if exclude is not None else (None,) * len(texts),
        )


Scorer = Callable[[Queries], np.ndarray]
Picker = Callable[[Reference, Queries, Day], Picks]


# ------------------------------------------------------------------------------------------ scorers
def cosine(q: Queries) -> np.ndarray:
    return q.cos


def bm25(q: Queries) -> np.ndarray:
    return q.bm25


def tfidf(q: Queries) -> np.ndarray:
    return q.tfidf


def hybrid(weight: float) -> Scorer:
    """cosine + weight x BM25n."""

    def score(q: Queries) -> np.ndarray:
        return q.cos + np.float32(weight) * q.bm25n

    return score


SCORERS: dict[str, Scorer] = {
    "MiniLM cosine": cosine,
    "TF-IDF": tfidf,
    "BM25": bm25,
    "hybrid cos+0.25 BM25n": hybrid(0.25),
    "hybrid cos+0.5 BM25n": hybrid(0.5),
    "hybrid cos+1.0 BM25n": hybrid(1.0),
}


# ------------------------------------------------------------------------------------------ pickers
def _masked(scores: np.ndarray, q: Queries, day: Day) -> np.ndarray:
    """(Q, m) scores of the day's candidates, -inf where a query excludes the paper."""
    s = scores[:, day.candidates].astype(np.float64)
    pos = {int(c): j for j, c in enumerate(day.candidates)}
    for k, e in enumerate(q.exclude):
        if e is not None and e in pos:
            s[k, pos[e]] = -np.inf
    return s


def top_picks(scorer: Scorer) -> Picker:
    """A pure ranking as a digest: the MAX_PAPERS best-scored papers of the day, no threshold."""

    def pick(ref: Reference, q: Queries, day: Day) -> Picks:
        s = _masked(scorer(q), q, day)
        order = np.argsort(-s, axis=1, kind="stable")[:, :MAX_PAPERS]
        return [[(int(day.candidates[j]), False) for j in row if np.isfinite(s[k, j])] for k, row in enumerate(order)]

    return pick


def thresholded(scorer: Scorer, threshold: float, trending_weight: float = 0.0, top_up: int = 0) -> Picker:
    """Papers whose relevance (``scorer``) is >= ``threshold``, ordered by relevance + trending_weight x
    log1p(upvotes) normalised in the day, at most MAX_PAPERS; digests with fewer than ``top_up`` picks are
    topped up with the most *relevant* remaining papers (fillers), not the most upvoted."""

    def pick(ref: Reference, q: Queries, day: Day) -> Picks:
        rel = _masked(scorer(q), q, day)
        up = np.log1p(np.maximum(ref.upvotes[day.candidates], 0).astype(np.float64))
        trend = up / up.max() if up.max() > 0 else np.zeros_like(up)
        ok = rel >= threshold
        score = np.where(ok, rel + trending_weight * trend, -np.inf)
        out: Picks = []
        for k in range(rel.shape[0]):
            chosen = [int(j) for j in np.argsort(-score[k], kind="stable")[:MAX_PAPERS] if ok[k, j]]
            picks = [(int(day.candidates[j]), False) for j in chosen]
            if len(picks) < top_up:
                rest = [int(j) for j in np.argsort(-rel[k], kind="stable")
                        if j not in chosen and np.isfinite(rel[k, j])]
                picks += [(int(day.candidates[j]), True) for j in rest[: top_up - len(picks)]]
            out.append(picks)
        return out

    return pick


# The shipped defaults before issue 13: cosine only, threshold 0.25, trending 0.1, top-up with the most
# upvoted papers (a top-up floor above any relevance sends every filler to trending).
BEFORE_13 = RankParams(trending_weight=0.1, min_relevance=0.25, min_picks=3, lexical_weight=0.0,
                       topup_min_relevance=float("inf"), rising_weight=0.0)


def shipped(params: RankParams) -> Picker:
    """The product's ranking: ``rank_subscribers`` on one-interest profiles built by
    ``profile_from_vectors`` (the phrase's MiniLM vector and, when ``params.lexical_weight`` > 0, its BM25
    terms against the reference's lexicon, as the pipeline builds them against the store's), every
    candidate listed on the day."""

    def pick(ref: Reference, q: Queries, day: Day) -> Picks:
        cand = day.candidates
        ids = ref.ids
        papers = PaperMatrix(
            ids=tuple(ids[i] for i in cand),
            vectors=np.ascontiguousarray(ref.vectors[cand], dtype=np.float32),
            upvotes=ref.upvotes[cand].astype(np.int64),
            listing_dates=np.full(len(cand), np.datetime64(day.date, "D")),
            texts=tuple(ref.texts[i].lower() for i in cand),
            terms=ref.lexicon.papers([ref.texts[i] for i in cand]) if params.lexical_weight else None,
        )
        vecs = dict(zip(q.texts, q.vectors, strict=True))
        terms = {t: ref.lexicon.query(t) for t in q.texts} if params.lexical_weight else None
        subs = [Subscriber(email=f"q{k}@bench.invalid", interests=(t,), max_papers=MAX_PAPERS, id=k + 1)
                for k, t in enumerate(q.texts)]
        profiles = [profile_from_vectors(s, vecs, {}, terms=terms) for s in subs]
        exclude = {k + 1: {ids[e]} for k, e in enumerate(q.exclude) if e is not None}
        ranking = rank_subscribers(profiles, papers, day.date, exclude=exclude, params=params)
        pos = {a: i for i, a in enumerate(ids)}
        return [[(pos[p.arxiv_id], p.reason == TRENDING) for p in ranking.picks(k + 1)] for k in range(len(subs))]

    return pick


def ranking_pickers(params: RankParams) -> dict[str, Picker]:
    """What the short-phrase and seed-paper tables compare: each scorer as a pure top-10 ranking, and the
    shipped ranking with ``params``."""
    out: dict[str, Picker] = {name: top_picks(s) for name, s in SCORERS.items()}
    out["shipped before issue 13"] = shipped(BEFORE_13)
    out["shipped rank_subscribers"] = shipped(params)
    return out
