"""Ranking: pure scoring and selection on numpy arrays (no database, no model).

For every subscriber at once (chunks of subscribers, matrix products):

* relevance of a paper = max over the subscriber's positive vectors (interests, seed papers, liked papers)
  of the cosine similarity, minus ``negative_weight`` x how far the max similarity to a negative vector
  exceeds ``negative_floor`` (unrelated texts score 0.1-0.25 with MiniLM: only real matches push down);
* hard filters: the subscriber's window of listing dates, already-sent papers (``exclude``), include /
  exclude keywords (whole words, any case, phrases allowed: ``keyword_pattern``), and ``min_relevance``;
* score = ``relevance_weight`` x relevance + ``trending_weight`` x trend + ``age_weight`` x freshness,
  where trend = log1p(upvotes) normalised to [0, 1] within the candidate papers and freshness = 1 for a
  paper listed on the digest day, falling linearly to 0 at ``window_days`` old;
* selection: maximal marginal relevance over the top ``max_papers x candidates_per_pick`` candidates, with
  a quota per positive vector (``max_papers // n`` each, at least 1) that is filled before the rest
  goes by MMR score;
* a subscriber with positive vectors who gets fewer than ``min(min_picks, max_papers)`` picks above the
  threshold is topped up to that many with the most upvoted of their allowed papers (same window,
  already-sent set and keyword filters; never a paper a negative interest pushes down), reason "trending";
* a subscriber without any positive vector gets the most upvoted papers of the window ("trending").
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from digest.models import Paper, Pick

TRENDING = "trending"


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
    min_picks: int = 3  # top up with trending papers to this many when too few pass min_relevance; 0 = off


@dataclass(frozen=True)
class PaperMatrix:
    """The candidate papers (the union of every subscriber's window) as arrays."""

    ids: tuple[str, ...]
    vectors: np.ndarray  # (n, d) float32, unit rows
    upvotes: np.ndarray  # (n,) int
    listing_dates: np.ndarray  # (n,) datetime64[D]
    texts: tuple[str, ...]  # lower-cased title + abstract + ai keywords, for keyword filters

    @classmethod
    def from_papers(cls, papers: Sequence[Paper], vectors: Mapping[str, np.ndarray]) -> PaperMatrix:
        """Papers without a vector are left out (embed them first)."""
        kept = [p for p in papers if p.arxiv_id in vectors]
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        mat = (
            np.stack([vectors[p.arxiv_id] for p in kept]).astype(np.float32, copy=False)
            if kept else np.zeros((0, dim), np.float32)
        )
        return cls(
            ids=tuple(p.arxiv_id for p in kept),
            vectors=mat,
            upvotes=np.array([p.upvotes for p in kept], dtype=np.int64),
            listing_dates=np.array([p.listing_date for p in kept], dtype="datetime64[D]"),
            texts=tuple(
                " ".join((p.title, p.abstract, " ".join(p.ai_keywords))).lower() for p in kept
            ),
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Profile:
    """One subscriber's vectors and filters. ``reasons[i]`` explains ``positives[i]``."""

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

    @property
    def has_interests(self) -> bool:
        return self.positives.shape[0] > 0


@dataclass
class Ranking:
    """The picks of all subscribers as arrays; ``picks(subscriber_id)`` builds the ``Pick`` list."""

    paper_ids: tuple[str, ...]
    subscriber_ids: list[int]
    index: np.ndarray  # (S, cap) paper index per rank, -1 = none
    scores: np.ndarray  # (S, cap) float32
    labels: np.ndarray  # (S, cap) which positive vector matched; -1 = trending
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

    def as_dict(self) -> dict[int, list[Pick]]:
        with _gc_paused():
            scores = self.scores.round(4).tolist()
            return {sid: self._picks_of_row(i, scores[i]) for i, sid in enumerate(self.subscriber_ids)}


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
    dates = papers.listing_dates
    allowed = (dates[None, :] >= starts[:, None]) & (dates[None, :] <= day)
    rows: list[int] = []
    cols: list[int] = []
    for b, prof in enumerate(profiles):
        sent = exclude.get(prof.subscriber_id)
        if prof.seen:
            sent = prof.seen | sent if sent else prof.seen
        if sent:
            idx = [pos[a] for a in sent if a in pos]
            rows.extend([b] * len(idx))
            cols.extend(idx)
        if prof.include_keywords:
            inc = np.zeros(len(papers), dtype=bool)
            for kw in prof.include_keywords:
                inc |= _keyword_mask(papers, kw_cache, kw)
            allowed[b] &= inc
        for kw in prof.exclude_keywords:
            allowed[b] &= ~_keyword_mask(papers, kw_cache, kw)
    if rows:
        allowed[np.array(rows), np.array(cols)] = False
    return allowed


def _index_vectors(
    profiles: Sequence[Profile], negative: bool, table: dict[object, int], store: list[np.ndarray]
) -> np.ndarray:
    """(S, K) row of each profile's vectors in ``store`` (deduplicated by key), -1 = padding."""
    counts = [len(p.negatives) if negative else len(p.positives) for p in profiles]
    width = max(max(counts, default=0), 1)
    idx = np.full((len(profiles), width), -1, dtype=np.int64)
    flat: list[int] = []
    get = table.get
    for b, prof in enumerate(profiles):
        c = counts[b]
        if not c:
            continue
        keys: Sequence[object] = (prof.negative_keys if negative else (prof.keys or prof.reasons))
        if len(keys) != c:
            keys = [(id(prof), negative, i) for i in range(c)]  # not shared
        for i, k in enumerate(keys):
            j = get(k)
            if j is None:
                j = table[k] = len(store)
                store.append((prof.negatives if negative else prof.positives)[i])
            flat.append(j)
    if flat:
        idx[np.arange(width)[None, :] < np.array(counts)[:, None]] = flat
    return idx


class _Sims:
    """Similarities of the deduplicated vectors with the papers: all at once when small, else per chunk."""

    def __init__(self, store: list[np.ndarray], P: np.ndarray) -> None:
        self.store = store
        self.P = P
        small = len(store) * P.shape[0] <= 32_000_000
        self.all = (np.stack(store).astype(np.float32, copy=False) @ P.T) if (small and store) else None

    def _local(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.all is not None:
            return self.all, idx
        used = idx[idx >= 0]
        uniq, inv = np.unique(used, return_inverse=True)
        loc = np.full_like(idx, -1)
        loc[idx >= 0] = inv
        U = np.stack([self.store[i] for i in uniq.tolist()]).astype(np.float32, copy=False)
        return U @ self.P.T, loc

    def max_over(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (B, K) vector indices: the max similarity over K, (B, n), plus what ``labels`` needs."""
        S, loc = self._local(idx)
        B, n = idx.shape[0], self.P.shape[0]
        best = np.full((B, n), -np.inf, dtype=np.float32)
        for k in range(idx.shape[1]):
            col = loc[:, k]
            has = col >= 0
            if not has.any():
                break
            sk = S[np.maximum(col, 0)]
            if not has.all():
                sk[~has] = -np.inf
            np.maximum(best, sk, out=best)
        return best, S, loc

    @staticmethod
    def labels(S: np.ndarray, loc: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Which of the K vectors gave the max, only at the candidate papers ``top`` (B, T)."""
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


def _select_mmr(
    score: np.ndarray, label_of: Callable[[np.ndarray], np.ndarray], caps: np.ndarray, n_pos: np.ndarray, PP: np.ndarray,
    params: RankParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy MMR with per-interest quotas, for a chunk of subscribers at once."""
    B, n = score.shape
    cap_max = int(caps.max(initial=0))
    K = min(n, max(cap_max * params.candidates_per_pick, cap_max))
    if K < n:
        top = np.argpartition(-score, K - 1, axis=1)[:, :K]
    else:
        top = np.broadcast_to(np.arange(n), (B, n)).copy()
    cs = np.take_along_axis(score, top, axis=1)
    cl = label_of(top)
    NEG = np.float32(-np.inf)
    # MMR value = lambda x score - (1 - lambda) x max similarity to the papers picked so far; a candidate
    # whose interest has not had its share yet gets a bonus larger than any value, so it goes first.
    lcs = np.where(np.isfinite(cs), np.float32(params.mmr_lambda) * cs, NEG).astype(np.float32)
    pen = np.zeros((B, K), dtype=np.float32)
    div = np.float32(1.0 - params.mmr_lambda)
    flat_pp = np.ascontiguousarray(PP, dtype=np.float32).ravel()
    quotas = bool((n_pos > 1).any())
    if quotas:
        counts = np.zeros((B, int(n_pos.max())), dtype=np.int64)
        quota = np.maximum(1, caps // np.maximum(n_pos, 1))
        bonus = np.full((B, K), 1e3, dtype=np.float32)
    rows = np.arange(B)
    index = np.full((B, cap_max), -1, dtype=np.int64)
    scores = np.zeros((B, cap_max), dtype=np.float32)
    labels = np.full((B, cap_max), -1, dtype=np.int64)
    val = np.empty((B, K), dtype=np.float32)
    for t in range(cap_max):
        done = caps == t
        if done.any():
            lcs[done] = NEG
        np.subtract(lcs, pen, out=val)
        if quotas:
            val += bonus
        j = val.argmax(axis=1)
        ok = np.isfinite(val[rows, j])
        if not ok.any():
            break
        pj = top[rows, j]
        lj = cl[rows, j]
        index[:, t] = np.where(ok, pj, -1)
        scores[:, t] = np.where(ok, cs[rows, j], 0.0)
        labels[:, t] = np.where(ok, lj, -1)
        lcs[rows, j] = NEG
        if quotas:
            counts[rows, lj] += ok
            full = ok & (counts[rows, lj] >= quota)
            if full.any():
                bonus[(cl == lj[:, None]) & full[:, None]] = 0.0
        np.maximum(pen, div * flat_pp[(pj * n)[:, None] + top], out=pen)
    # A row that is not ok at step t has nothing available: its later steps are not ok either, so -1
    # ends every subscriber's picks.
    return index, scores, labels


def _select_trending(allowed: np.ndarray, order: np.ndarray, trend: np.ndarray, caps: np.ndarray):
    B = allowed.shape[0]
    cap_max = int(caps.max(initial=0))
    a = allowed[:, order]
    taken = a & (np.cumsum(a, axis=1) <= caps[:, None])
    index = np.full((B, cap_max), -1, dtype=np.int64)
    r, c = np.nonzero(taken)
    slot = np.cumsum(taken, axis=1)[r, c] - 1
    index[r, slot] = order[c]
    scores = np.where(index >= 0, trend[np.maximum(index, 0)], 0.0).astype(np.float32)
    return index, scores, np.full((B, cap_max), -1, dtype=np.int64)


def _fill_trending(
    index: np.ndarray, scores: np.ndarray, labels: np.ndarray, allowed: np.ndarray, penalty: np.ndarray | None,
    caps: np.ndarray, order: np.ndarray, trend: np.ndarray, min_picks: int,
) -> None:
    """In place: top up the rows with fewer than ``min(min_picks, cap)`` picks with the most upvoted of
    their allowed papers not picked yet and not pushed down by a negative interest (label -1: trending)."""
    if min_picks <= 0 or index.shape[1] == 0:
        return
    have = (index >= 0).sum(axis=1)
    need = np.minimum(caps, min_picks) - have
    aff = np.flatnonzero(need > 0)
    if aff.size == 0:
        return
    # Columns in trending order (a copy): the next pick of a row is its first True column.
    sel = np.ix_(aff, order)
    ok = allowed[sel]
    if penalty is not None:  # the negative interests' push-down (B, n)
        ok &= penalty[sel] <= 0
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    cur = index[aff]
    r, c = np.nonzero(cur >= 0)
    ok[r, inv[cur[r, c]]] = False
    rows = np.arange(aff.size)
    slot = have[aff]
    left = need[aff]
    for _ in range(int(left.max())):
        j = ok.argmax(axis=1)
        go = (left > 0) & ok[rows, j]
        if not go.any():
            break
        g, jg = aff[go], order[j[go]]
        index[g, slot[go]] = jg
        scores[g, slot[go]] = trend[jg]
        labels[g, slot[go]] = -1
        ok[rows[go], j[go]] = False
        slot += go
        left -= go


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
    result = Ranking(papers.ids, [p.subscriber_id for p in profiles], index, scores, labels,
                     [p.reasons for p in profiles])
    if n == 0 or S == 0:
        return result

    P = np.ascontiguousarray(papers.vectors, dtype=np.float32)
    up = np.log1p(np.maximum(papers.upvotes, 0).astype(np.float32))
    trend = up / up.max() if up.max() > 0 else np.zeros(n, np.float32)
    d = np.datetime64(day, "D")
    age = (d - papers.listing_dates).astype(np.float32)
    fresh = 1.0 - np.clip(age, 0, params.window_days) / max(params.window_days, 1)
    base = (params.trending_weight * trend + params.age_weight * fresh).astype(np.float32)
    PP = P @ P.T
    order = np.lexsort((np.arange(n), -papers.upvotes))  # most upvoted first, stable
    pos = {a: i for i, a in enumerate(papers.ids)}
    kw_cache: dict[str, np.ndarray] = {}
    default_start = d

    day_cache: dict[date, np.datetime64] = {}

    def as_day(x: date) -> np.datetime64:
        v = day_cache.get(x)
        if v is None:
            v = day_cache[x] = np.datetime64(x, "D")
        return v

    def starts_of(group: Sequence[Profile]) -> np.ndarray:
        if not window_start:
            return np.full(len(group), default_start)
        return np.array([as_day(window_start.get(p.subscriber_id, day)) for p in group], dtype="datetime64[D]")

    has = [len(p.positives) > 0 for p in profiles]
    with_int = [i for i, h in enumerate(has) if h]
    without = [i for i, h in enumerate(has) if not h]
    step = max(params.chunk_size, 1)
    table: dict[object, int] = {}
    store: list[np.ndarray] = []
    interested = [profiles[i] for i in with_int]
    pos_idx = _index_vectors(interested, False, table, store)
    neg_idx = _index_vectors(interested, True, table, store)
    sims = _Sims(store, P)

    for lo in range(0, len(with_int), step):
        rows = np.array(with_int[lo : lo + step])
        group = [profiles[i] for i in rows]
        allowed = _allowed(group, papers, d, starts_of(group), exclude, pos, kw_cache)
        pidx = pos_idx[lo : lo + step]
        rel, S_pos, loc_pos = sims.max_over(pidx)
        nidx = neg_idx[lo : lo + step]
        push = None
        if (nidx >= 0).any():
            neg, _, _ = sims.max_over(nidx)
            neg[~np.isfinite(neg)] = 0.0
            push = params.negative_weight * np.maximum(neg - params.negative_floor, 0.0)
            del neg
            rel = rel - push
        valid = allowed & (rel >= params.min_relevance)
        score = np.where(valid, params.relevance_weight * rel + base[None, :], -np.inf).astype(np.float32)
        caps = np.array([p.max_papers for p in group], dtype=np.int64)
        n_pos = np.array([p.positives.shape[0] for p in group], dtype=np.int64)
        i_, s_, l_ = _select_mmr(
            score, lambda top, S=S_pos, loc=loc_pos: _Sims.labels(S, loc, top), caps, n_pos, PP, params
        )
        _fill_trending(i_, s_, l_, allowed, push, caps, order, trend, params.min_picks)
        w = i_.shape[1]
        index[rows, :w], scores[rows, :w], labels[rows, :w] = i_, s_, l_

    for lo in range(0, len(without), step):
        rows = np.array(without[lo : lo + step])
        group = [profiles[i] for i in rows]
        allowed = _allowed(group, papers, d, starts_of(group), exclude, pos, kw_cache)
        caps = np.array([p.max_papers for p in group], dtype=np.int64)
        i_, s_, l_ = _select_trending(allowed, order, trend, caps)
        w = i_.shape[1]
        index[rows, :w], scores[rows, :w], labels[rows, :w] = i_, s_, l_
    return result

