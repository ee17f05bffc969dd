"""Ranking: pure scoring and selection on numpy arrays (no database, no model).

For every subscriber at once (chunks of subscribers, matrix products):

* relevance of a paper to one positive (an interest, a seed paper) = cosine + ``lexical_weight`` x BM25n
  of the positive's terms against the paper's title, abstract and AI keywords (``digest.bm25``; a positive
  without terms is cosine only). A subscriber's relevance is the max over their positives,
* minus ``negative_weight`` x how far the max cosine to a negative interest exceeds ``negative_floor``
  (unrelated texts score 0.1-0.25 with MiniLM: only real matches push down),
* plus the local effect of the subscriber's votes: a vote moves only the papers *like the voted one*, by
  the kernel k(s) = clip((s - vote_floor) / (vote_full - vote_floor), 0, 1) of their cosine s with it,
  times the vote's weight a in (0, 1] (it decays with the vote's age: ``digest.profiles``). On the real
  listings (tests/fixtures/hf) two papers of different days have cosine 0.35 (median), 0.45 (p80), 0.50
  (p90), 0.62 (p99), and a paper's nearest neighbour in the next listing 0.56 (median): the floor 0.45
  leaves four papers in five untouched and the kernel is full for papers closer than almost any pair. Likes add
  ``like_weight`` x min(1, sum a k), dislikes subtract ``dislike_weight`` x min(1, sum a k): bounded in
  total, whatever the number of votes, so votes never outweigh the declared interests;
* follows: a paper from a lab the subscriber follows (its HF handle or display name) or by an author they
  follow (full name; both any case, whitespace collapsed) gets ``follow_boost`` added to its score, once
  however many follows match, and passes ``min_relevance`` even without a matching interest;
* hard filters: the subscriber's window of listing dates, already-sent papers (``exclude``), include /
  exclude keywords (whole words, any case, phrases allowed: ``keyword_pattern``), "only papers with code"
  (no GitHub repository: never picked), and ``min_relevance``;
* score = ``relevance_weight`` x relevance + ``trending_weight`` x trend + ``rising_weight`` x rising +
  ``age_weight`` x freshness, where trend = log1p(upvotes) normalised to [0, 1] within the candidate papers,
  rising = the upvote velocity on a fixed scale (``PaperMatrix.from_papers``) and freshness = 1 for a
  paper listed on the digest day, falling linearly to 0 at ``window_days`` old;
* selection: maximal marginal relevance over the top ``max_papers x candidates_per_pick`` candidates, with
  a quota per positive (``max_papers // n`` each, at least 1) that is filled before the rest goes by MMR
  score (votes have no quota);
* a subscriber with positives who gets fewer than ``min(min_picks, max_papers)`` picks above the threshold
  is topped up to that many: first with the most relevant remaining papers whose relevance is at least
  ``topup_min_relevance`` (reason "closest: <the positive's reason>"), then with the most upvoted ones
  ("trending"); same window, already-sent set and keyword filters, never a paper a negative interest or
  a dislike pushes down;
* a subscriber without any positive gets the most upvoted papers of the window ("trending"), the papers
  they follow first.

Reasons: the positive that gave the max ("interest: x", "seed paper: id"); "liked: id" when a vote lifted
the paper over ``min_relevance``; "rising: +N upvotes since T" when the rising term decided the pick
(without it, the best paper left out would have scored higher); "from <lab>, which you follow" / "by
<author>, whom you follow" when the follow decided it (without the boost the paper would not have passed
``min_relevance`` or made the cut).

Speed: the distinct vectors of all subscribers are deduplicated (by key: the same interest text is one
vector) and stacked once; each chunk multiplies a view or one gather of them with the papers.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from scipy import sparse

from digest.bm25 import NO_TERMS, Lexicon, PaperTerms, QueryTerms, document
from digest.models import Paper, Pick, PickColumns
from digest.rank_select import select_mmr

TRENDING = "trending"
CLOSEST = "closest"
RISING = "rising"
LIKED = "liked"
FOLLOW_ORG = "from {}, which you follow"
FOLLOW_AUTHOR = "by {}, whom you follow"
# The rising signal: upvotes gained per hour, on a fixed log scale that reaches 1 at RISING_FULL per hour
# (a paper of the day's top few gains ~100-300 in its first day: ~4-12 an hour). Fewer than RISING_MIN_GAIN
# upvotes gained is no rise.
# Similarities of all distinct vectors with the papers are computed at once up to this many values
# (128 MB of float32), else per chunk of subscribers.
ALL_AT_ONCE = 32_000_000
RISING_FULL = 10.0
RISING_MIN_GAIN = 5
NO_FOLLOWS = np.zeros((0, 0), dtype=bool)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Creating a million small objects (picks) triggers repeated full GC passes over every profile:
    pause the cyclic GC meanwhile (nothing here creates cycles)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True, slots=True)
class RankParams:
    """The knobs of the ranking. The defaults here are the plain cosine ranking (no lexical half, no rising
    signal, a top-up with trending papers only); what the product ships is ``digest.config.Settings``'
    ``rank_*`` values, read by ``from_settings`` and calibrated by bench/ranking_quality.py."""

    relevance_weight: float = 1.0
    trending_weight: float = 0.1
    age_weight: float = 0.02
    negative_weight: float = 1.0
    negative_floor: float = 0.25
    min_relevance: float = 0.25
    mmr_lambda: float = 0.85
    window_days: int = 7
    candidates_per_pick: int = 3
    chunk_size: int = 8192
    min_picks: int = 3  # top up to this many when too few pass min_relevance; 0 = off
    lexical_weight: float = 0.0  # w in relevance = cosine + w x BM25n
    topup_min_relevance: float = math.inf  # the top-up takes the most relevant papers down to this, then trending
    rising_weight: float = 0.0
    like_weight: float = 0.15
    dislike_weight: float = 0.3
    vote_floor: float = 0.45
    vote_full: float = 0.7
    follow_boost: float = 0.15  # added to the score of a paper from a followed lab or by a followed author

    @classmethod
    def from_settings(cls, settings: Any) -> RankParams:
        """The knobs of ``digest.config.Settings`` (``rank_*``)."""
        return cls(
            relevance_weight=settings.rank_relevance_weight,
            trending_weight=settings.rank_trending_weight,
            age_weight=settings.rank_age_weight,
            negative_weight=settings.rank_negative_weight,
            negative_floor=settings.rank_negative_floor,
            min_relevance=settings.rank_min_relevance,
            mmr_lambda=settings.rank_mmr_lambda,
            window_days=settings.rank_window_days,
            min_picks=settings.rank_min_picks,
            lexical_weight=settings.rank_lexical_weight,
            topup_min_relevance=settings.rank_topup_min_relevance,
            rising_weight=settings.rank_rising_weight,
            like_weight=settings.rank_like_weight,
            dislike_weight=settings.rank_dislike_weight,
            vote_floor=settings.rank_vote_floor,
            vote_full=settings.rank_vote_full,
            follow_boost=settings.rank_follow_boost,
        )


@dataclass(frozen=True)
class PaperMatrix:
    """The candidate papers (the union of every subscriber's window) as arrays."""

    ids: tuple[str, ...]
    vectors: np.ndarray  # (n, d) float32, unit rows
    upvotes: np.ndarray  # (n,) int
    listing_dates: np.ndarray  # (n,) datetime64[D]
    texts: tuple[str, ...]  # lower-cased title + abstract + ai keywords, for keyword filters
    terms: PaperTerms | None = None  # the lexical side of relevance (None: cosine only)
    rising: np.ndarray | None = None  # (n,) in [0, 1]
    rising_reasons: tuple[str, ...] = ()  # per paper: "rising: +N upvotes since T", "" when not rising
    # Follows: follow_key(...) -> the papers of that lab / by that author, with the name as the paper gives it.
    follows: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    has_code: np.ndarray | None = None  # (n,) bool: a GitHub repository; None: unknown, no code filter

    @classmethod
    def from_papers(
        cls,
        papers: Sequence[Paper],
        vectors: Mapping[str, np.ndarray],
        lexicon: Lexicon | None = None,
        rises: Mapping[str, tuple[int, datetime, float]] | None = None,
    ) -> PaperMatrix:
        """Papers without a vector are left out (embed them first). ``lexicon``: the BM25 reference
        statistics (``digest.lexicon``); without it relevance is cosine only. ``rises[arxiv_id]``: upvotes
        gained, since when, and per hour (``digest.store.upvotes``)."""
        kept = [p for p in papers if p.arxiv_id in vectors]
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        mat = (
            np.stack([vectors[p.arxiv_id] for p in kept]).astype(np.float32, copy=False)
            if kept else np.zeros((0, dim), np.float32)
        )
        docs = [document(p.title, p.abstract, p.ai_keywords) for p in kept]
        rising = None
        rising_reasons: tuple[str, ...] = ()
        if rises:
            rising = np.zeros(len(kept), dtype=np.float32)
            why = [""] * len(kept)
            for j, p in enumerate(kept):
                r = rises.get(p.arxiv_id)
                if r is None or r[0] < RISING_MIN_GAIN or r[2] <= 0:
                    continue
                rising[j] = min(1.0, math.log1p(r[2]) / math.log1p(RISING_FULL))
                why[j] = f"{RISING}: +{r[0]} upvotes since {r[1]:%Y-%m-%d %H:%M} UTC"
            rising_reasons = tuple(why)
        follows: dict[str, tuple[list[int], str]] = {}
        for j, p in enumerate(kept):
            lab = p.organization or p.organization_name
            keys = {follow_key("org", name) for name in (p.organization_name, p.organization) if name}
            named = [(k, lab) for k in keys] + [(follow_key("author", a), a) for a in p.authors]
            for k, name in named:
                if k.partition(":")[2]:
                    got = follows.setdefault(k, ([], " ".join(str(name).split())))[0]
                    if not got or got[-1] != j:
                        got.append(j)
        return cls(
            ids=tuple(p.arxiv_id for p in kept),
            vectors=mat,
            upvotes=np.array([p.upvotes for p in kept], dtype=np.int64),
            listing_dates=np.array([p.listing_date for p in kept], dtype="datetime64[D]"),
            texts=tuple(d.lower() for d in docs),
            terms=lexicon.papers(docs) if lexicon is not None else None,
            rising=rising,
            rising_reasons=rising_reasons,
            follows={k: (np.array(js, dtype=np.int64), name) for k, (js, name) in follows.items()},
            has_code=np.array([bool(p.github_url) for p in kept], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Profile:
    """One subscriber's vectors and filters. ``reasons[i]`` explains ``positives[i]``; ``terms[i]`` is the
    lexical side of ``positives[i]`` (empty: cosine only)."""

    subscriber_id: int
    positives: np.ndarray  # (k, d) float32
    reasons: tuple[str, ...]
    negatives: np.ndarray  # (m, d) float32
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()
    max_papers: int = 10
    seen: frozenset[str] = frozenset()  # seed and voted papers: never picked
    # Identity of each vector: rows with the same key (the same interest text, the same paper) are one
    # vector, compared with the papers once for all subscribers. Default: the reason of a positive, and
    # no sharing for negatives.
    keys: tuple[str, ...] = ()
    negative_keys: tuple[str, ...] = ()
    terms: tuple[QueryTerms, ...] = ()
    # Votes: the voted papers' vectors, signed weights (+ more like this, - less like this, in [-1, 1],
    # decayed with age) and their reasons ("liked: id", "disliked: id"), keyed by the paper's id.
    votes: np.ndarray | None = None  # (v, d) float32
    vote_weights: tuple[float, ...] = ()
    vote_reasons: tuple[str, ...] = ()
    follows: tuple[str, ...] = ()  # ``follow_key``s of the labs and authors followed
    only_with_code: bool = False  # papers without a GitHub repository are never picked

    @property
    def has_interests(self) -> bool:
        return self.positives.shape[0] > 0


@dataclass
class Ranking:
    """The picks of all subscribers as arrays; ``picks(subscriber_id)`` builds the ``Pick`` list.

    ``labels[i, r]`` >= 0 indexes ``reasons[i]``; -1 = trending."""

    paper_ids: tuple[str, ...]
    subscriber_ids: list[int]
    index: np.ndarray  # (S, cap) paper index per rank, -1 = none
    scores: np.ndarray  # (S, cap) float32
    labels: np.ndarray  # (S, cap) which reason explains the pick; -1 = trending
    reasons: list[tuple[str, ...]]
    _row: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._row = {sid: i for i, sid in enumerate(self.subscriber_ids)}

    def picks(self, subscriber_id: int) -> list[Pick]:
        return self._picks_of_row(self._row[subscriber_id], self.scores[self._row[subscriber_id]].round(4).tolist())

    def _picks_of_row(self, i: int, scores: list[float]) -> list[Pick]:
        reasons = self.reasons[i]
        ids = self.paper_ids
        out: list[Pick] = []
        for rank, (j, lab) in enumerate(zip(self.index[i].tolist(), self.labels[i].tolist()), start=1):
            if j < 0:
                break
            out.append(Pick(ids[j], rank, scores[rank - 1], TRENDING if lab < 0 else reasons[lab]))
        return out

    def columns(self) -> PickColumns:
        """Every pick as columns (``PickColumns``), built from the arrays with no object per pick: what
        planning writes to the outbox."""
        r, c = np.nonzero(self.index >= 0)  # row-major: subscribers in order, each one's ranks ascending
        rows = r.tolist()
        labels = self.labels[r, c].tolist()
        reasons = self.reasons
        ids = np.asarray(self.paper_ids, dtype=object)[self.index[r, c]].tolist() if r.size else []
        return PickColumns(
            subscriber_ids=list(self.subscriber_ids),
            row=rows,
            rank=(c + 1).tolist(),
            arxiv_id=ids,
            score=self.scores[r, c].round(4).tolist(),
            reason=[TRENDING if lab < 0 else reasons[i][lab] for i, lab in zip(rows, labels)],
        )

    def as_dict(self) -> dict[int, list[Pick]]:
        with _gc_paused():
            scores = self.scores.round(4).tolist()
            return {sid: self._picks_of_row(i, scores[i]) for i, sid in enumerate(self.subscriber_ids)}


# ------------------------------------------------------------------------------------------ filters


def follow_key(kind: str, name: str) -> str:
    """How a follow and a paper's lab or author are matched: ``org:`` or ``author:`` and the name with
    whitespace collapsed, any case (``follow_key("org", "NVIDIA ")`` == ``follow_key("org", "nvidia")``)."""
    return f"{kind}:{' '.join(name.split()).casefold()}"


def _followed(profiles: Sequence[Profile], papers: PaperMatrix) -> np.ndarray | None:
    """(B, n) bool: the paper is from a lab or by an author the subscriber follows; None: no follows."""
    fol = None
    for b, prof in enumerate(profiles):
        for key in prof.follows:
            hit = papers.follows.get(key)
            if hit is not None:
                if fol is None:
                    fol = np.zeros((len(profiles), len(papers)), dtype=bool)
                fol[b, hit[0]] = True
    return fol


def _follow_reason(prof: Profile, papers: PaperMatrix, j: int) -> str:
    """The reason of a pick the follow decided: the first of the subscriber's follows that names paper ``j``
    (labs before authors, in the order they were given)."""
    for key in sorted(prof.follows, key=lambda k: not k.startswith("org:")):
        hit = papers.follows.get(key)
        if hit is not None and j in hit[0]:
            return (FOLLOW_ORG if key.startswith("org:") else FOLLOW_AUTHOR).format(hit[1])
    raise AssertionError("a followed paper without its follow")  # _followed and this read the same map


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """A keyword as subscribers mean it: whole words, any case, a plural 's' allowed, a phrase's words
    separated by spaces or hyphens (``RL`` matches "RL-tuned" but not "world"; ``world model`` matches
    "World Models" but not "world-class model")."""
    words = [re.escape(w) for w in re.split(r"[\s\-]+", keyword.strip()) if w]
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join(words) + r"(?:e?s)?(?!\w)", re.IGNORECASE)


def _keyword_mask(papers: PaperMatrix, cache: dict[str, np.ndarray], kw: str) -> np.ndarray:
    m = cache.get(kw)
    if m is None:
        search = keyword_pattern(kw).search
        m = np.fromiter((search(t) is not None for t in papers.texts), dtype=bool, count=len(papers))
        cache[kw] = m
    return m


def _allowed(
    profiles: Sequence[Profile],
    papers: PaperMatrix,
    day: np.datetime64,
    starts: np.ndarray,
    exclude: Mapping[int, set[str] | frozenset[str]],
    pos: Mapping[str, int],
    kw_cache: dict[str, np.ndarray],
) -> np.ndarray:
    """(B, n) bool: the paper is in the subscriber's window, not already sent, passes the keywords."""
    dates = papers.listing_dates.astype("datetime64[D]").view(np.int64)
    u, inv = np.unique(starts.astype("datetime64[D]").view(np.int64), return_inverse=True)
    last = np.datetime64(day, "D").view(np.int64)
    allowed = ((dates[None, :] >= u[:, None]) & (dates[None, :] <= last))[inv.ravel()]  # few distinct windows
    rows: list[int] = []
    cols: list[int] = []
    get = exclude.get
    for b, prof in enumerate(profiles):
        sent = get(prof.subscriber_id)
        if prof.seen:
            sent = prof.seen | sent if sent else prof.seen
        if sent:
            idx = [pos[a] for a in sent if a in pos]
            rows.extend([b] * len(idx))
            cols.extend(idx)
        if not (prof.include_keywords or prof.exclude_keywords or prof.only_with_code):
            continue
        if prof.include_keywords:
            inc = np.zeros(len(papers), dtype=bool)
            for kw in prof.include_keywords:
                inc |= _keyword_mask(papers, kw_cache, kw)
            allowed[b] &= inc
        for kw in prof.exclude_keywords:
            allowed[b] &= ~_keyword_mask(papers, kw_cache, kw)
        if prof.only_with_code and papers.has_code is not None:
            allowed[b] &= papers.has_code
    if rows:
        allowed[np.array(rows), np.array(cols)] = False
    return allowed


# ------------------------------------------------------------------------------------------ vectors


@dataclass
class _Table:
    """Every profile's vectors of one kind, deduplicated by key. Shared vectors are stacked once (``U``);
    when nothing is shared (distinct interests) the rows are the profiles' own arrays in order, and a chunk
    stacks just its own (one concatenate of its profiles' arrays, no Python list of single vectors and no
    second copy of every vector in memory)."""

    idx: np.ndarray  # (S, K) row of the table for each profile's k-th vector, -1 = none
    U: np.ndarray | None  # (Nu, d) float32, or None: the rows are ``arrays`` concatenated
    first: np.ndarray  # (Nu,) position of each row's first occurrence in the profiles' concatenated vectors
    arrays: Sequence[np.ndarray] = ()
    offsets: np.ndarray | None = None  # (S + 1,) first row of each profile's array
    dim: int = 0

    @property
    def n_rows(self) -> int:
        return int(self.first.size)

    def take(self, rows: slice | np.ndarray) -> np.ndarray:
        """The stacked rows ``rows`` (a slice, or sorted indices)."""
        if self.U is not None:
            return self.U[rows]
        assert self.offsets is not None
        idx = np.arange(self.n_rows)[rows]
        if idx.size == 0:
            return np.zeros((0, self.dim), np.float32)
        lo = int(np.searchsorted(self.offsets, idx[0], "right")) - 1
        hi = int(np.searchsorted(self.offsets, idx[-1], "right"))
        block = np.concatenate(self.arrays[lo:hi]).astype(np.float32, copy=False)
        first = int(idx[0] - self.offsets[lo])
        if isinstance(rows, slice) and (rows.step or 1) == 1:  # consecutive rows: a view, no gather
            return block[first : first + idx.size]
        return block[idx - self.offsets[lo]]

    @classmethod
    def build(cls, arrays: Sequence[np.ndarray], keys: Sequence[Sequence[object]], dim: int,
              rows: int | None = None) -> _Table:
        """``arrays``/``keys`` per profile; an empty ``arrays`` stands for ``rows`` profiles with none."""
        if not arrays:
            return cls(np.full((rows or 0, 1), -1, dtype=np.int64), np.zeros((0, dim), np.float32),
                       np.zeros(0, np.int64), dim=dim)
        counts = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        total = int(counts.sum())
        width = max(int(counts.max(initial=0)), 1)
        idx = np.full((len(arrays), width), -1, dtype=np.int64)
        if total == 0:
            return cls(idx, np.zeros((0, dim), np.float32), np.zeros(0, np.int64), dim=dim)
        if (np.fromiter(map(len, keys), dtype=np.int64, count=len(keys)) == counts).all():
            flat_keys = list(chain.from_iterable(keys))
        else:
            flat_keys = [
                k for b, (a, ks) in enumerate(zip(arrays, keys))
                for k in (ks if len(ks) == a.shape[0] else [(b, i, None) for i in range(a.shape[0])])
            ]
        table = dict.fromkeys(flat_keys)  # first occurrences, in order
        mask = np.arange(width)[None, :] < counts[:, None]
        if len(table) == total:  # nothing shared: the rows are the profiles' arrays, in order
            idx[mask] = np.arange(total)
            offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            return cls(idx, None, np.arange(total), arrays, offsets, dim)
        row = {k: i for i, k in enumerate(table)}
        uid = np.fromiter(map(row.__getitem__, flat_keys), dtype=np.int64, count=total)
        _, first = np.unique(uid, return_index=True)  # ids were given in order of first occurrence
        flat = np.concatenate([a for a in arrays if a.shape[0]]).astype(np.float32, copy=False)
        idx[mask] = uid
        return cls(idx, np.ascontiguousarray(flat[first]), first, dim=dim)


def _lexical_rows(terms: Sequence[QueryTerms], vocab: Mapping[str, int]) -> sparse.csr_matrix:
    """(len(terms), V) BM25n query weights over the candidate papers' vocabulary (absent tokens score 0)."""
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    get = vocab.get
    for q in terms:
        for t, w in zip(q.tokens, q.weights):
            r = get(t)
            if r is not None:
                indices.append(r)
                data.append(w)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, np.float32), np.asarray(indices, np.int32), np.asarray(indptr, np.int64)),
        shape=(len(terms), len(vocab)),
    )


class _Lexical:
    """weight x BM25n of a table's rows against the papers. Rows are grouped by their ``QueryTerms``
    object (profiles built from the same text share it), so each distinct query is mapped and scored once:
    all at once when small, else per chunk with one sparse product."""

    def __init__(self, terms: Sequence[QueryTerms], papers: PaperTerms, weight: float) -> None:
        keys = list(map(id, terms))
        objs = {id(q): q for q in terms}
        order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        self.didx = np.fromiter(map(order.__getitem__, keys), dtype=np.int64, count=len(keys))
        L = _lexical_rows([objs[k] for k in order], papers.vocab)
        L.data *= np.float32(weight)
        self.L, self.tfn = L, papers.tfn
        self.all = (np.asarray(L @ papers.tfn, dtype=np.float32)
                    if L.shape[0] * papers.tfn.shape[1] <= ALL_AT_ONCE else None)

    def add_to(self, S: np.ndarray, rows: slice | np.ndarray) -> None:
        """S += the lexical scores of table rows ``rows`` (a slice or indices, S's rows in that order)."""
        d = self.didx[rows]
        if self.all is not None:
            S += self.all[d]
        else:
            S += np.asarray(self.L[d] @ self.tfn, dtype=np.float32)


class _Sims:
    """Similarities of a table's rows with the papers (cosine + weight x BM25n when ``lexical`` is given):
    all at once when small, else per chunk of subscribers, from a view or one gather of the stacked rows."""

    def __init__(self, table: _Table, P: np.ndarray, lexical: _Lexical | None = None) -> None:
        self.table, self.P, self.lex = table, P, lexical
        n = table.n_rows
        small = n * P.shape[0] <= ALL_AT_ONCE
        self.all = self._sims(slice(0, n)) if (small and n) else None

    def _sims(self, rows: slice | np.ndarray) -> np.ndarray:
        S: np.ndarray = self.table.take(rows) @ self.P.T
        if self.lex is not None:
            self.lex.add_to(S, rows)
        return S

    def local(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The similarity rows a chunk's (B, K) indices need, and the indices remapped to them."""
        if self.all is not None:
            return self.all, idx
        has = idx >= 0
        used = np.unique(idx[has])
        if used.size == 0:
            return np.zeros((0, self.P.shape[0]), np.float32), idx
        a, b = int(used[0]), int(used[-1]) + 1
        if b - a == used.size:  # contiguous rows (distinct interests): a view, no copy
            return self._sims(slice(a, b)), np.where(has, idx - a, -1)
        return self._sims(used), np.where(has, np.searchsorted(used, idx), -1)


def _consecutive(loc: np.ndarray, rows: int) -> np.ndarray | None:
    """When the (B, K) row indices are 0, 1, 2, ... in row-major order, every subscriber having >= 1 row
    (distinct interests, stacked in profile order), the first row of each subscriber; else ``None``."""
    counts = (loc >= 0).sum(axis=1)
    if rows == 0 or counts.min(initial=0) == 0 or int(counts.sum()) != rows:
        return None
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    flat = loc[loc >= 0]
    return starts if bool((flat == np.arange(rows)).all()) else None


def _max_over(S: np.ndarray, loc: np.ndarray, n: int, starts: np.ndarray | None = None) -> np.ndarray:
    """(B, n): for each subscriber the max over their K rows of ``S`` (-inf when they have none).
    ``starts`` (from ``_consecutive``): one reduction over the rows, no gathers."""
    if starts is not None:
        return np.maximum.reduceat(S, starts, axis=0)
    B = loc.shape[0]
    best = np.full((B, n), -np.inf, dtype=np.float32)
    for k in range(loc.shape[1]):
        col = loc[:, k]
        has = col >= 0
        if not has.any():
            break
        sk = S[np.maximum(col, 0)]
        if not has.all():
            sk[~has] = -np.inf
        np.maximum(best, sk, out=best)
    return best


def _argmax_at(S: np.ndarray, loc: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Which of the K rows gave the max, only at the papers ``top`` (B, T)."""
    best = np.full(top.shape, -np.inf, dtype=np.float32)
    lab = np.zeros(top.shape, dtype=np.int64)
    for k in range(loc.shape[1]):
        col = loc[:, k]
        has = col >= 0
        if not has.any():
            break
        sk = np.where(has[:, None], S[np.maximum(col, 0)[:, None], top], -np.inf)
        better = sk > best
        best = np.where(better, sk, best)
        lab[better] = k
    return lab


# ------------------------------------------------------------------------------------------ selection


def _select_trending(allowed: np.ndarray, order: np.ndarray, trend: np.ndarray, caps: np.ndarray):
    B = allowed.shape[0]
    cap_max = int(caps.max(initial=0))
    a = np.take_along_axis(allowed, order, axis=1) if order.ndim == 2 else allowed[:, order]  # 2-D: per row
    taken = a & (np.cumsum(a, axis=1) <= caps[:, None])
    index = np.full((B, cap_max), -1, dtype=np.int64)
    r, c = np.nonzero(taken)
    slot = np.cumsum(taken, axis=1)[r, c] - 1
    index[r, slot] = order[r, c] if order.ndim == 2 else order[c]
    scores = np.where(index >= 0, trend[np.maximum(index, 0)], 0.0).astype(np.float32)
    return index, scores, np.full((B, cap_max), -1, dtype=np.int64)


def _fill(index: np.ndarray, rows: np.ndarray, cand: np.ndarray, ok: np.ndarray, need: np.ndarray,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In place: append to ``index[rows]`` up to ``need`` papers each from ``cand`` (A, m), the papers
    in order of preference, where ``ok`` and not picked yet. Returns (row in ``rows``, slot, paper)."""
    cur = index[rows]
    have = (cur >= 0).sum(axis=1)
    n = int(max(cand.max(initial=-1), cur.max(initial=-1))) + 1
    picked = np.zeros((rows.size, n), dtype=bool)
    r, c = np.nonzero(cur >= 0)
    picked[r, cur[r, c]] = True
    ok = ok & ~np.take_along_axis(picked, cand, axis=1)
    taken = ok & (np.cumsum(ok, axis=1) <= need[:, None])
    r, c = np.nonzero(taken)
    slot = have[r] + np.cumsum(taken, axis=1)[r, c] - 1
    paper = cand[r, c]
    index[rows[r], slot] = paper
    return r, slot, paper


# ------------------------------------------------------------------------------------------ reasons


class _Reasons:
    """Reasons beyond a profile's own (closest, rising): appended to that subscriber's tuple on demand."""

    def __init__(self, base: list[tuple[str, ...]]) -> None:
        self.base = base
        self.extra: dict[int, dict[str, int]] = {}

    def label(self, row: int, reason: str) -> int:
        extra = self.extra.setdefault(row, {})
        lab = extra.get(reason)
        if lab is None:
            lab = extra[reason] = len(self.base[row]) + len(extra)
        return lab

    def finish(self) -> list[tuple[str, ...]]:
        for row, extra in self.extra.items():
            self.base[row] = self.base[row] + tuple(extra)
        return self.base


@_gc_paused()  # a fresh context per call: decorator use of a contextmanager
def rank_subscribers(
    profiles: Sequence[Profile],
    papers: PaperMatrix,
    day: date,
    *,
    exclude: Mapping[int, set[str] | frozenset[str]] | None = None,
    window_start: Mapping[int, date] | None = None,
    params: RankParams = RankParams(),
) -> Ranking:
    """Rank ``papers`` for every profile.

    ``exclude[subscriber_id]``: papers already sent to that subscriber (never picked).
    ``window_start[subscriber_id]``: first listing date of that subscriber's window (default ``day``);
    papers listed after ``day`` are never candidates."""
    exclude = exclude or {}
    window_start = window_start or {}
    n = len(papers)
    S = len(profiles)
    cap_all = max((p.max_papers for p in profiles), default=0)
    index = np.full((S, cap_all), -1, dtype=np.int64)
    scores = np.zeros((S, cap_all), dtype=np.float32)
    labels = np.full((S, cap_all), -1, dtype=np.int64)
    reasons = _Reasons([p.reasons + p.vote_reasons if p.vote_reasons else p.reasons for p in profiles])
    result = Ranking(papers.ids, [p.subscriber_id for p in profiles], index, scores, labels, reasons.base)
    if n == 0 or S == 0:
        return result

    P = np.ascontiguousarray(papers.vectors, dtype=np.float32)
    dim = P.shape[1]
    up = np.log1p(np.maximum(papers.upvotes, 0).astype(np.float32))
    trend = up / up.max() if up.max() > 0 else np.zeros(n, np.float32)
    d = np.datetime64(day, "D")
    age = (d - papers.listing_dates).astype(np.float32)
    fresh = 1.0 - np.clip(age, 0, params.window_days) / max(params.window_days, 1)
    rising = papers.rising if papers.rising is not None else np.zeros(n, np.float32)
    rise_part = (params.rising_weight * rising).astype(np.float32)
    base = (params.trending_weight * trend + params.age_weight * fresh + rise_part).astype(np.float32)
    PP = np.ascontiguousarray(P @ P.T, dtype=np.float32)
    order = np.lexsort((np.arange(n), -papers.upvotes))  # most upvoted first, stable
    pos = {a: i for i, a in enumerate(papers.ids)}
    kw_cache: dict[str, np.ndarray] = {}
    min_rel = np.float32(params.min_relevance)

    day_cache: dict[date, np.datetime64] = {}

    def as_day(x: date) -> np.datetime64:
        v = day_cache.get(x)
        if v is None:
            v = day_cache[x] = np.datetime64(x, "D")
        return v

    def starts_of(group: Sequence[Profile]) -> np.ndarray:
        if not window_start:
            return np.full(len(group), d)
        return np.array([as_day(window_start.get(p.subscriber_id, day)) for p in group], dtype="datetime64[D]")

    has_pos = np.fromiter((p.positives.shape[0] > 0 for p in profiles), dtype=bool, count=S)
    with_int, without = np.flatnonzero(has_pos), np.flatnonzero(~has_pos)
    step = max(params.chunk_size, 1)
    interested = [profiles[i] for i in with_int]

    # The vectors of every subscriber with interests, stacked once (deduplicated by key).
    pos_t = _Table.build([p.positives for p in interested], [p.keys or p.reasons for p in interested], dim)
    lexical = None
    if params.lexical_weight and any(p.terms for p in interested):
        if papers.terms is None:
            raise ValueError("the profiles have lexical terms but the papers have none: build the PaperMatrix "
                             "with a lexicon (PaperMatrix.from_papers(..., lexicon=...))")
        flat_terms = [
            t for p in interested
            for t in (p.terms if len(p.terms) == p.positives.shape[0] else (NO_TERMS,) * p.positives.shape[0])
        ]
        if pos_t.U is not None:  # shared vectors: the terms of each row's first occurrence
            flat_terms = [flat_terms[f] for f in pos_t.first.tolist()]
        lexical = _Lexical(flat_terms, papers.terms, params.lexical_weight)
    sims = _Sims(pos_t, P, lexical)
    negatives = [p.negatives for p in interested]
    if any(map(len, negatives)):
        neg_t = _Table.build(negatives, [p.negative_keys for p in interested], dim)
    else:
        neg_t = _Table.build([], [], dim, rows=len(interested))
    neg_sims = _Sims(neg_t, P)
    no_votes = np.zeros((0, dim), np.float32)
    voters = any(p.votes is not None for p in interested)
    vote_arrays = [p.votes if p.votes is not None and len(p.vote_weights) else no_votes for p in interested] \
        if voters else []
    vote_t = _Table.build(vote_arrays, [p.vote_reasons for p in interested] if voters else [], dim,
                          rows=len(interested))
    vote_sims = _Sims(vote_t, P)
    vote_w = np.zeros(vote_t.idx.shape, dtype=np.float32)
    for b, p in enumerate(interested if voters else ()):
        if p.vote_weights and p.votes is not None:
            vote_w[b, : len(p.vote_weights)] = p.vote_weights
    n_pos_all = (pos_t.idx >= 0).sum(axis=1)
    floor = np.float32(params.vote_floor)
    span = np.float32(max(params.vote_full - params.vote_floor, 1e-6))

    for lo in range(0, len(with_int), step):
        rows = with_int[lo : lo + step]
        group = interested[lo : lo + step]
        B = len(group)
        allowed = _allowed(group, papers, d, starts_of(group), exclude, pos, kw_cache)
        S_pos, loc_pos = sims.local(pos_t.idx[lo : lo + step])
        rel = _max_over(S_pos, loc_pos, n, _consecutive(loc_pos, S_pos.shape[0]) if sims.all is None else None)
        push = None
        nidx = neg_t.idx[lo : lo + step]
        if (nidx >= 0).any():
            S_neg, loc_neg = neg_sims.local(nidx)
            neg = _max_over(S_neg, loc_neg, n)
            neg[~np.isfinite(neg)] = 0.0
            push = params.negative_weight * np.maximum(neg - params.negative_floor, 0.0)
            del neg
            rel -= push
        # Votes: a local, bounded effect around each voted paper (only the rows that voted).
        vidx = vote_t.idx[lo : lo + step]
        vrows = np.flatnonzero((vidx >= 0).any(axis=1))
        like = kern = vloc = None
        if vrows.size:
            S_v, vloc = vote_sims.local(vidx[vrows])
            kern = np.clip((S_v - floor) / span, 0.0, 1.0).astype(np.float32)
            vw = vote_w[lo : lo + step][vrows]
            like = np.zeros((vrows.size, n), dtype=np.float32)
            dis = np.zeros((vrows.size, n), dtype=np.float32)
            for k in range(vloc.shape[1]):
                col = vloc[:, k]
                has = col >= 0
                contrib = kern[np.maximum(col, 0)] * np.abs(vw[:, k])[:, None]
                like += np.where((has & (vw[:, k] > 0))[:, None], contrib, 0.0)
                dis += np.where((has & (vw[:, k] < 0))[:, None], contrib, 0.0)
            like = params.like_weight * np.minimum(like, 1.0)
            dis = params.dislike_weight * np.minimum(dis, 1.0)
            rel[vrows] += like - dis
            if push is None:
                push = np.zeros((B, n), dtype=np.float32)
            push[vrows] += dis
        fol = _followed(group, papers) if params.follow_boost > 0 else None
        caps = np.array([p.max_papers for p in group], dtype=np.int64)
        n_pos = n_pos_all[lo : lo + step]
        cap_max = int(caps.max(initial=0))
        i_, s_, l_, left = select_mmr(
            rel, base, params.relevance_weight, allowed, fol if fol is not None else NO_FOLLOWS,
            params.follow_boost, params.min_relevance, caps, np.ascontiguousarray(n_pos, dtype=np.int64),
            S_pos, np.ascontiguousarray(loc_pos), PP, params.mmr_lambda,
            max(cap_max * params.candidates_per_pick, cap_max),
        )
        kind = np.zeros(i_.shape, dtype=np.int8)  # 0 relevant, 1 closest, 2 trending
        # Top-up: the most relevant remaining papers first, then the most upvoted.
        need = np.minimum(caps, params.min_picks) - (i_ >= 0).sum(axis=1)
        aff = np.flatnonzero(need > 0) if params.min_picks > 0 and i_.shape[1] else np.zeros(0, np.int64)
        if aff.size:
            ok = allowed[aff]
            if push is not None:
                ok &= push[aff] <= 0
            near = ok & (rel[aff] >= params.topup_min_relevance) & np.isfinite(rel[aff])
            if near.any():
                key = np.where(near, rel[aff], -np.inf)
                # The best few only: picked papers are among them (they passed the threshold), so
                # need + picks candidates always suffice.
                m = min(n, int(need[aff].max()) + int((i_[aff] >= 0).sum(axis=1).max()))
                cand = (np.argpartition(-key, m - 1, axis=1)[:, :m] if m < n
                        else np.broadcast_to(np.arange(n), key.shape))
                cand = np.take_along_axis(
                    cand, np.argsort(-np.take_along_axis(key, cand, axis=1), axis=1, kind="stable"), axis=1)
                r, slot, paper = _fill(i_, aff, cand, np.take_along_axis(near, cand, axis=1), need[aff])
                if r.size:
                    g = aff[r]
                    s_[g, slot] = params.relevance_weight * rel[g, paper] + base[paper]
                    l_[g, slot] = _argmax_at(S_pos, loc_pos[g], paper[:, None])[:, 0]
                    kind[g, slot] = 1
            need2 = np.minimum(caps[aff], params.min_picks) - (i_[aff] >= 0).sum(axis=1)
            more = need2 > 0
            if more.any():
                a2 = aff[more]
                cand2 = np.broadcast_to(order, (a2.size, n))
                ok2 = ok[more][:, order]
                r, slot, paper = _fill(i_, a2, cand2, ok2, need2[more])
                g = a2[r]
                s_[g, slot] = trend[paper]
                l_[g, slot] = -1
                kind[g, slot] = 2
        # Reasons beyond the positives: a vote that lifted the paper over the threshold, the rising
        # term when it decided the pick, the top-up's "closest".
        if vrows.size and like is not None and vloc is not None and kern is not None:
            sub = i_[vrows]
            has = (sub >= 0) & (kind[vrows] == 0)
            js = np.maximum(sub, 0)
            lifted = has & (np.take_along_axis(like, js, axis=1) > 0) & (
                np.take_along_axis(rel[vrows] - like, js, axis=1) < min_rel
            )
            if lifted.any():
                vw = vote_w[lo : lo + step][vrows]
                best = np.full(sub.shape, -np.inf, dtype=np.float32)
                which = np.zeros(sub.shape, dtype=np.int64)
                for k in range(vloc.shape[1]):
                    col = vloc[:, k]
                    val = np.where(((col >= 0) & (vw[:, k] > 0))[:, None],
                                   kern[np.maximum(col, 0)[:, None], js] * vw[:, k][:, None], -np.inf)
                    better = val > best
                    best = np.where(better, val, best)
                    which[better] = k
                k_pos = n_pos[vrows]
                l_[vrows] = np.where(lifted, k_pos[:, None] + which, l_[vrows])
        if params.rising_weight and papers.rising is not None:
            js = np.maximum(i_, 0)
            rp = rise_part[js]
            decided = (i_ >= 0) & (kind == 0) & (rp > 0) & (s_ - rp < left[:, None])
            for b, t in zip(*np.nonzero(decided)):
                l_[b, t] = reasons.label(int(rows[b]), papers.rising_reasons[int(i_[b, t])])
        if fol is not None:
            js = np.maximum(i_, 0)
            on = (i_ >= 0) & (kind == 0) & np.take_along_axis(fol, js, axis=1)
            decided = on & ((np.take_along_axis(rel, js, axis=1) < min_rel)
                            | (s_ - np.float32(params.follow_boost) < left[:, None]))
            for b, t in zip(*np.nonzero(decided)):
                l_[b, t] = reasons.label(int(rows[b]), _follow_reason(group[b], papers, int(i_[b, t])))
        for b, t in zip(*np.nonzero(kind == 1)):
            why = result.reasons[int(rows[b])][int(l_[b, t])]
            l_[b, t] = reasons.label(int(rows[b]), f"{CLOSEST}: {why}")
        w = i_.shape[1]
        index[rows, :w], scores[rows, :w], labels[rows, :w] = i_, s_, l_

    for lo in range(0, len(without), step):
        rows = without[lo : lo + step]
        group = [profiles[i] for i in rows]
        allowed = _allowed(group, papers, d, starts_of(group), exclude, pos, kw_cache)
        caps = np.array([p.max_papers for p in group], dtype=np.int64)
        fol = _followed(group, papers) if params.follow_boost > 0 else None
        if fol is None:
            i_, s_, l_ = _select_trending(allowed, order, trend, caps)
        else:
            # The followed papers first (most upvoted first among them), then the rest by upvotes: a
            # followed paper that trending alone would not have picked says so.
            plain, _, _ = _select_trending(allowed, order, trend, caps)
            ford = np.argsort(~fol[:, order], axis=1, kind="stable")
            i_, s_, l_ = _select_trending(allowed, order[ford], trend, caps)
            js = np.maximum(i_, 0)
            on = (i_ >= 0) & np.take_along_axis(fol, js, axis=1)
            in_plain = (plain[:, :, None] == i_[:, None, :]).any(axis=1) if plain.size else np.zeros_like(on)
            for b, t in zip(*np.nonzero(on & ~in_plain)):
                l_[b, t] = reasons.label(int(rows[b]), _follow_reason(group[b], papers, int(i_[b, t])))
        w = i_.shape[1]
        index[rows, :w], scores[rows, :w], labels[rows, :w] = i_, s_, l_
    result.reasons = reasons.finish()
    return result
