"""Graded ranking metrics, threshold calibration and a paired significance test (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ndcg_at(ranked: Sequence[int], grades: np.ndarray, k: int = 10) -> float:
    """nDCG@k with gain 2^grade - 1 (central 3, partial 1) and log2 discount; ``ranked`` may be shorter
    than k (a digest with fewer picks): missing ranks gain nothing. ``grades``: (n,) of every document."""
    gain = (2.0 ** grades[np.asarray(ranked[:k], dtype=np.int64)] - 1.0) if len(ranked) else np.zeros(0)
    dcg = float((gain / np.log2(np.arange(2, len(gain) + 2))).sum())
    ideal = np.sort(2.0 ** grades - 1.0)[::-1][:k]
    idcg = float((ideal / np.log2(np.arange(2, len(ideal) + 2))).sum())
    return dcg / idcg if idcg > 0 else 0.0


def precision_at(ranked: Sequence[int], grades: np.ndarray, k: int = 5) -> float:
    """Share of the first k ranks holding a paper graded >= 1 (an empty rank counts as a miss)."""
    return float((grades[np.asarray(ranked[:k], dtype=np.int64)] >= 1).sum()) / k


def recall_at(ranked: Sequence[int], grades: np.ndarray, k: int = 10) -> float:
    """Share of the papers graded >= 1 that are in the first k ranks."""
    total = int((grades >= 1).sum())
    return float((grades[np.asarray(ranked[:k], dtype=np.int64)] >= 1).sum()) / total if total else 0.0


def signflip_p(a: np.ndarray, b: np.ndarray, rounds: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of the paired sign-flip randomisation test that mean(a - b) is 0 (pairs = phrases)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not d.any():
        return 1.0
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(rounds, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + (null >= abs(d.mean()) - 1e-12).sum()) / (rounds + 1))


def prf_at(scores: np.ndarray, positive: np.ndarray, t: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of 'score >= t' for predicting ``positive``."""
    pred = scores >= t
    tp = float((pred & positive).sum())
    p = tp / pred.sum() if pred.any() else 0.0
    r = tp / positive.sum() if positive.any() else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The threshold (one of the observed scores) that maximises F1; ties go to the higher threshold."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order].astype(np.float64)
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + y.sum())
    last = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every tied score
    f1 = np.where(last, f1, -1.0)
    return float(s[int(np.argmax(f1))])


def quantiles(v: np.ndarray, qs: Sequence[float] = (10, 25, 50, 75, 90)) -> list[float]:
    return [float(x) for x in np.percentile(v, qs)] if len(v) else [float("nan")] * len(qs)
