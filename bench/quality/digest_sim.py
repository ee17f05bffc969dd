"""Subscriber-days: every labelled phrase is one subscriber with that one interest and max_papers 10,
mailed once per simulated day (the corpus cut into days, see data.make_days). What a subscriber sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Day
from .methods import Picker, Queries, Reference
from .metrics import ndcg_at


@dataclass(frozen=True)
class DigestFigures:
    days_with_relevant: int  # subscriber-days on which >= 1 paper graded >= 1 was listed
    days_without: int  # subscriber-days with nothing relevant listed
    top1: float  # share of days_with_relevant whose first pick is graded >= 1
    delivered: float  # relevant papers mailed / relevant papers listed (summed over subscriber-days)
    none_relevant: float  # share of days_with_relevant on which no relevant paper was mailed
    fillers: int  # picks sent as fillers ("trending"), all subscriber-days
    fillers_while_missed: int  # fillers sent on subscriber-days that left a listed relevant paper out
    days_filler_missed: int  # how many such subscriber-days
    picks_per_digest: float  # mean picks per subscriber-day with something relevant listed
    picks_when_nothing: float  # mean picks per subscriber-day with nothing relevant listed
    precision: float  # share of all picks graded >= 1
    ndcg: float  # mean digest nDCG@10 (ideal = the day's relevant papers), days_with_relevant
    upvote_pct: float  # mean percentile of the picks' upvotes within their day (50 = an average paper)


def simulate(picker: Picker, ref: Reference, q: Queries, grades: np.ndarray, days: list[Day]) -> DigestFigures:
    """``grades``: (Q, N) grade of every (query, reference paper) pair."""
    with_rel = without = top1 = none = fillers = fill_missed = days_fm = 0
    listed_rel = sent_rel = picks_rel = picks_all = 0
    picks_with: list[int] = []
    picks_without: list[int] = []
    ndcgs: list[float] = []
    pcts: list[float] = []
    for day in days:
        cand = day.candidates
        up = ref.upvotes[cand]
        pct = {int(c): float((up <= up[j]).mean() * 100) for j, c in enumerate(cand)}
        picks = picker(ref, q, day)
        for k, row in enumerate(picks):
            g_day = np.zeros(grades.shape[1], dtype=np.int64)
            g_day[cand] = grades[k, cand]
            rel = {int(c) for c in cand if grades[k, c] >= 1}
            ids = [i for i, _ in row]
            hit = [i for i in ids if i in rel]
            n_fill = sum(1 for _, f in row if f)
            fillers += n_fill
            picks_all += len(row)
            picks_rel += len(hit)
            pcts += [pct[i] for i in ids]
            if not rel:
                without += 1
                picks_without.append(len(row))
                continue
            with_rel += 1
            picks_with.append(len(row))
            listed_rel += len(rel)
            sent_rel += len(hit)
            top1 += bool(ids) and ids[0] in rel
            none += not hit
            if len(hit) < len(rel) and n_fill:
                fill_missed += n_fill
                days_fm += 1
            ndcgs.append(ndcg_at(ids, g_day))
    return DigestFigures(
        days_with_relevant=with_rel, days_without=without,
        top1=top1 / max(with_rel, 1), delivered=sent_rel / max(listed_rel, 1), none_relevant=none / max(with_rel, 1),
        fillers=fillers, fillers_while_missed=fill_missed, days_filler_missed=days_fm,
        picks_per_digest=float(np.mean(picks_with)) if picks_with else 0.0,
        picks_when_nothing=float(np.mean(picks_without)) if picks_without else 0.0,
        precision=picks_rel / max(picks_all, 1), ndcg=float(np.mean(ndcgs)) if ndcgs else 0.0,
        upvote_pct=float(np.mean(pcts)) if pcts else float("nan"),
    )
