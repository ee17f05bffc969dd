"""The per-subscriber selection of the ranking, compiled: candidates, their labels and greedy MMR with
per-interest quotas, one subscriber row at a time in one pass (``digest.rank`` calls it per chunk).

In numpy the same selection is ~20 passes over (subscribers x candidates) arrays per pick (10 picks: 200
passes, most of the ranking's time beyond the matrix product at 100k subscribers). Compiled with numba
(LLVM), each row's few candidates stay in cache and the cost per subscriber is a few microseconds. The
compiled code is cached next to this module (``cache=True``): a process loads it instead of compiling.

Semantics (what ``rank_subscribers`` documents):

* candidates: the row's finite scores when they are at most ``K`` (in paper order), else its ``K`` best
  (ties broken by paper order);
* label of a candidate: which of the subscriber's positive rows ``loc[b, :]`` of ``S`` gave its max (the
  first on ties; 0 when the subscriber has one positive);
* MMR value = lambda x score - (1 - lambda) x the max similarity (``PP``) to the papers picked so far; a
  candidate whose positive has not had its quota (``max(1, cap // n_pos)``, only when ``n_pos > 1``) goes
  before any that has; the first best value wins ties; at most ``caps[b]`` picks;
* ``left[b]``: the best score among the candidates not picked (-inf when none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled, its machine code cached on disk (next to this module, else the user's cache
    directory); where neither is writable (a read-only install under a user without a home), compiled
    in each process instead (about a second, once)."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, boundscheck=False)(fn)


@_compiled
def select_mmr(
    rel: np.ndarray,  # (B, n) float32 relevance
    base: np.ndarray,  # (n,) float32 the papers' trending + rising + freshness part of the score
    rel_weight: float,
    allowed: np.ndarray,  # (B, n) bool: window, not sent, keywords, code
    fol: np.ndarray,  # (B, n) bool: from a followed lab or author; (0, 0) when nobody follows anything
    boost: float,
    min_rel: float,
    caps: np.ndarray,  # (B,) int64
    n_pos: np.ndarray,  # (B,) int64
    S: np.ndarray,  # (R, n) float32, the positives' relevance rows
    loc: np.ndarray,  # (B, Kp) int64 row of S of each subscriber's k-th positive, -1 = none
    PP: np.ndarray,  # (n, n) float32 paper-paper cosine
    lam: float,
    K: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per subscriber: score = rel_weight x rel + base (+ boost when followed), a candidate when allowed
    and rel >= min_rel (or followed); then the candidates and MMR (module docstring). Returns the picks'
    (B, max cap) paper indices (-1 = none), scores and labels (-1 = none), and ``left``."""
    B, n = rel.shape
    cap_max = 0
    for b in range(B):
        cap_max = max(cap_max, caps[b])
    index = np.full((B, cap_max), -1, dtype=np.int64)
    scores = np.zeros((B, cap_max), dtype=np.float32)
    labels = np.full((B, cap_max), -1, dtype=np.int64)
    left = np.full(B, -np.inf, dtype=np.float32)
    K = min(K, n)
    if K <= 0:
        return index, scores, labels, left
    w32 = np.float32(rel_weight)
    boost32 = np.float32(boost)
    min32 = np.float32(min_rel)
    lam32 = np.float32(lam)
    div = np.float32(1.0 - lam)
    follows = fol.shape[0] == B and fol.shape[1] == n
    top = np.empty(K, dtype=np.int64)
    cs = np.empty(K, dtype=np.float32)
    cl = np.empty(K, dtype=np.int64)
    lcs = np.empty(K, dtype=np.float32)
    pen = np.empty(K, dtype=np.float32)
    picked = np.empty(K, dtype=np.bool_)
    fin = np.empty(n, dtype=np.int64)
    sc = np.empty(n, dtype=np.float32)
    neg = np.empty(n, dtype=np.float32)
    counts = np.zeros(loc.shape[1] + 1, dtype=np.int64)
    for b in range(B):
        cap = caps[b]
        if cap <= 0:
            continue
        # The row's candidates: allowed, relevant enough (or followed), with a finite score.
        c = 0
        for j in range(n):
            if not allowed[b, j]:
                continue
            r = rel[b, j]
            f = follows and fol[b, j]
            if not (r >= min32 or f):
                continue
            v = r * w32 + base[j]
            if f:
                v += boost32
            if np.isfinite(v):
                fin[c] = j
                sc[c] = v
                c += 1
        if c == 0:
            continue
        # Every candidate when there are at most K, else the K best (paper order on ties).
        if c <= K:
            m = c
            for i in range(c):
                top[i] = fin[i]
                cs[i] = sc[i]
        else:
            for i in range(c):
                neg[i] = -sc[i]
            kth = -np.partition(neg[:c], K - 1)[K - 1]  # the K-th best score
            m = 0
            for i in range(c):  # strictly better first, then equal ones up to K, in paper order
                if sc[i] > kth:
                    top[m] = fin[i]
                    cs[m] = sc[i]
                    m += 1
            for i in range(c):
                if m == K:
                    break
                if sc[i] == kth:
                    top[m] = fin[i]
                    cs[m] = sc[i]
                    m += 1
        npos = n_pos[b]
        for i in range(m):
            j = top[i]
            lcs[i] = lam32 * cs[i]
            pen[i] = 0.0
            picked[i] = False
            lab = 0
            if npos > 1:
                best = np.float32(-np.inf)
                for k in range(loc.shape[1]):
                    r = loc[b, k]
                    if r >= 0 and S[r, j] > best:
                        best = S[r, j]
                        lab = k
            cl[i] = lab
        quota = max(1, cap // npos) if npos > 1 else cap
        for k in range(counts.size):
            counts[k] = 0
        for t in range(min(cap, m)):
            bi = -1  # the best candidate whose positive is still under its quota
            bv = np.float32(-np.inf)
            oi = -1  # the best of the others
            ov = np.float32(-np.inf)
            for i in range(m):
                if picked[i]:
                    continue
                v = lcs[i] - pen[i]
                if counts[cl[i]] < quota:
                    if bi < 0 or v > bv:
                        bi, bv = i, v
                elif oi < 0 or v > ov:
                    oi, ov = i, v
            if bi < 0:
                bi, bv = oi, ov
            if bi < 0:
                break
            pj = top[bi]
            index[b, t] = pj
            scores[b, t] = cs[bi]
            labels[b, t] = cl[bi]
            picked[bi] = True
            counts[cl[bi]] += 1
            for i in range(m):
                p = div * PP[pj, top[i]]
                if p > pen[i]:
                    pen[i] = p
        best_left = np.float32(-np.inf)
        for i in range(m):
            if not picked[i] and cs[i] > best_left:
                best_left = cs[i]
        left[b] = best_left
    return index, scores, labels, left
