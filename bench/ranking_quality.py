"""Ranking quality on real data only: the 224-paper corpus (tests/fixtures/corpus), hand-graded short
interest phrases (bench/labels) and real Hugging Face listings. Prints plain tables.

1. One known answer per query (R@1, R@5, MRR): a title finds its own abstract among 224; a paper's
   ai_keywords find that paper among the pooled listings. Too easy to tell methods apart (issue 13).
2. Short phrases: 40 phrases of 1-4 words as subscribers type them, every corpus paper graded 0/1/2 by
   hand. nDCG@10, P@5, recall@10 per method, over the whole corpus listed on one day.
3. Seed paper: a labelled paper as the seed; its relevant papers are those graded for the phrases in
   which the seed is central (grade 2), with their grade for that phrase (the best one when several).
4. Calibration: cosine and hybrid scores of grade 2 / 1 / 0 pairs, and the F1-best thresholds.
5. Subscriber-days: the corpus cut into 8 days of 28 papers; each phrase is a subscriber with that one
   interest and max_papers 10. What the shipped ranking and a thresholded hybrid mail.
6. Trending weight: its cost on top-1 relevance, with upvotes drawn from a real listing's.
7. Trending weight on the keyword task with the listings' real upvotes; similarity spreads.

Methods live in bench/quality/methods.py, one function each (scorers rank, pickers build digests).

8. Calibration of the shipped ranking (issue 13): lexical weight x threshold x top-up floor of
   ``rank_subscribers`` itself (hybrid, MMR, trending, top-up) on the subscriber-days, chosen by digest F1
   (precision of the picks x share of relevant papers delivered), with a 2-fold check over the phrases.

"shipped rank_subscribers" is the product with the defaults of digest/config.py; "shipped before issue 13"
the defaults before (cosine only, threshold 0.25, trending 0.1, top-up with the most upvoted papers).

Run: .venv/bin/python bench/ranking_quality.py [--verbose] [--cache]
  --verbose: per-phrase and per-seed tables; --cache: keep the encodings in the temp dir between runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from digest.config import Settings  # noqa: E402
from digest.embed import Embedder, paper_text  # noqa: E402
from digest.pipeline import rank_params  # noqa: E402
from quality.data import (  # noqa: E402
    DAY_SIZE, LABELS, Day, corpus_upvotes, grade_matrix, load_corpus, load_labels, load_pooled_listings, make_days,
)
from digest.rank import RankParams  # noqa: E402
from quality.digest_sim import DigestFigures, simulate  # noqa: E402
from quality.methods import (  # noqa: E402
    BEFORE_13, MAX_PAPERS, SCORERS, Picker, Queries, Reference, hybrid, ranking_pickers, shipped, thresholded,
)
from quality.metrics import (  # noqa: E402
    best_f1_threshold, ndcg_at, precision_at, prf_at, quantiles, recall_at, signflip_p,
)

HYBRID_W = 0.5  # the blend weight of the digest-level figures and the calibration


# ---------------------------------------------------------------------------------------------- helpers
def known_answer(sim: np.ndarray) -> tuple[float, float, float]:
    """sim[i, j]: query i vs document j; document i is the relevant one. R@1, R@5, MRR."""
    target = sim[np.arange(len(sim)), np.arange(len(sim))]
    rank = (sim > target[:, None]).sum(axis=1) + 1  # ties count for the query
    return float((rank <= 1).mean()), float((rank <= 5).mean()), float((1.0 / rank).mean())


def graded_metrics(picker: Picker, ref: Reference, q: Queries, grades: np.ndarray) -> np.ndarray:
    """(Q, 3): nDCG@10, P@5, recall@10 of each query, the whole reference listed on one day."""
    everything = Day(make_days(1)[0].date, np.arange(len(ref.texts)))
    picks = picker(ref, q, everything)
    out = np.zeros((len(picks), 3))
    for k, row in enumerate(picks):
        ids = [i for i, _ in row]
        out[k] = ndcg_at(ids, grades[k]), precision_at(ids, grades[k]), recall_at(ids, grades[k])
    return out


def print_graded(title: str, per: dict[str, np.ndarray], n: int) -> None:
    base = per["MiniLM cosine"][:, 0]
    print(title)
    print(f"| {'method':<30} | n    | nDCG@10 | P@5   | R@10  | nDCG vs cosine | p (sign-flip) |")
    print(f"|{'-' * 32}|------|---------|-------|-------|----------------|---------------|")
    for name, m in per.items():
        d = m[:, 0].mean() - base.mean()
        pv = signflip_p(m[:, 0], base)
        p = "" if name == "MiniLM cosine" else ("< 0.0001" if pv < 1e-4 else f"{pv:.4f}")
        print(f"| {name:<30} | {n:>4} | {m[:, 0].mean():7.3f} | {m[:, 1].mean():5.3f} | {m[:, 2].mean():5.3f} | "
              f"{d:+14.3f} | {p:>13} |")


def print_per_query(names: list[str], labels: list[str], per: dict[str, np.ndarray], col: int, what: str,
                    extra: list[str]) -> None:
    short = [n.replace("hybrid cos+", "hyb ").replace(" BM25n", "").replace("shipped rank_subscribers", "shipped")
             .replace("MiniLM cosine", "cosine") for n in names]
    print(f"\n{what} per query (fail = nDCG@10 < 0.3 is marked *)\n")
    print(f"| {'query':<32} | {'info':<16} | " + " | ".join(f"{s:>8}" for s in short) + " |")
    print(f"|{'-' * 34}|{'-' * 18}|" + "|".join("-" * 10 for _ in short) + "|")
    for k, lab in enumerate(labels):
        cells = []
        for nm in names:
            v = per[nm][k, col]
            mark = "*" if col == 0 and v < 0.3 else " "
            cells.append(f"{v:7.3f}{mark}")
        print(f"| {lab[:32]:<32} | {extra[k][:16]:<16} | " + " | ".join(f"{c:>8}" for c in cells) + " |")


def print_digest(rows: list[tuple[str, DigestFigures]]) -> None:
    f0 = rows[0][1]
    print(f"{f0.days_with_relevant} subscriber-days with >= 1 relevant paper listed, {f0.days_without} with none.\n")
    print("| method                                   | top-1 rel | delivered | none rel | fillers | fill. while missed "
          "| picks | picks, nothing rel | precision | nDCG@10 |")
    print("|------------------------------------------|-----------|-----------|----------|---------|--------------------"
          "|-------|--------------------|-----------|---------|")
    for name, f in rows:
        fm = f"{f.fillers_while_missed} ({f.days_filler_missed} days)"
        print(f"| {name:<40} | {f.top1:9.3f} | {f.delivered:9.3f} | {f.none_relevant:8.3f} | {f.fillers:7d} | "
              f"{fm:>18} | {f.picks_per_digest:5.2f} | {f.picks_when_nothing:18.2f} | {f.precision:9.3f} | "
              f"{f.ndcg:7.3f} |")


def encode_all(emb: Embedder, cache: bool, *groups: list[str]) -> list[np.ndarray]:
    """Each group of texts encoded; with ``cache``, kept in the temp dir keyed by model, precision and texts."""
    import hashlib
    import tempfile

    key = hashlib.sha256("\x01".join([emb.name, emb.precision, *("\x00".join(g) for g in groups)]).encode())
    path = Path(tempfile.gettempdir()) / f"papers-digest-quality-{key.hexdigest()[:16]}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return [z[f"g{i}"] for i in range(len(groups))]
    out = [emb.encode(g) for g in groups]
    if cache:
        np.savez(path, **{f"g{i}": v for i, v in enumerate(out)})
    return out


def calibrate(ref: Reference, phrases: list, PH: np.ndarray, G: np.ndarray, days: list[Day],
              params: RankParams) -> None:
    """Section 8: the shipped ranking over a grid of (lexical weight, threshold, top-up floor); each
    setting scored by digest F1 = 2 P R / (P + R) with P = precision of the picks, R = relevant delivered.
    2-fold: the best setting on even-numbered phrases scored on odd ones, and the reverse."""
    even = np.arange(len(phrases)) % 2 == 0
    halves = {}
    for name, m in (("all", np.ones(len(phrases), bool)), ("even", even), ("odd", ~even)):
        idx = np.flatnonzero(m)
        halves[name] = (Queries.build(ref, [phrases[k].text for k in idx], PH[idx]), G[idx])

    def f1(f: DigestFigures) -> float:
        return 2 * f.precision * f.delivered / max(f.precision + f.delivered, 1e-9)

    grid = [(w, t, fl) for w in (0.25, 0.5, 1.0) for t in np.round(np.arange(0.35, 0.86, 0.05), 2)
            for fl in (0.0, 0.2, 0.3)]
    results: dict[tuple, dict[str, DigestFigures]] = {}
    for w, t, fl in grid:
        p = dataclasses.replace(params, lexical_weight=w, min_relevance=float(t), topup_min_relevance=fl)
        results[(w, t, fl)] = {h: simulate(shipped(p), ref, q, g, days) for h, (q, g) in halves.items()}
    print("| lexical w | threshold | top-up floor | digest F1 | precision | delivered | top-1 rel | none rel | "
          "nDCG@10 | picks |")
    print("|-----------|-----------|--------------|-----------|-----------|-----------|-----------|----------|"
          "---------|-------|")
    ranked = sorted(results, key=lambda k: -f1(results[k]["all"]))
    for key in ranked[:12]:
        f = results[key]["all"]
        print(f"| {key[0]:9} | {key[1]:9.2f} | {key[2]:12} | {f1(f):9.3f} | {f.precision:9.3f} | {f.delivered:9.3f} | "
              f"{f.top1:9.3f} | {f.none_relevant:8.3f} | {f.ndcg:7.3f} | {f.picks_per_digest:5.2f} |")
    cur = (params.lexical_weight, round(params.min_relevance, 2), params.topup_min_relevance)
    if cur in results:
        f = results[cur]["all"]
        print(f"| shipped: {cur[0]} | {cur[1]:9.2f} | {cur[2]:12} | {f1(f):9.3f} | {f.precision:9.3f} | "
              f"{f.delivered:9.3f} | {f.top1:9.3f} | {f.none_relevant:8.3f} | {f.ndcg:7.3f} | {f.picks_per_digest:5.2f} |")
    print("\n2-fold check (setting chosen on one half of the phrases by digest F1, scored on the other):\n")
    print("| chosen on | lexical w | threshold | top-up floor | F1 there | F1 held out | F1 of the shipped setting "
          "on the held-out half |")
    print("|-----------|-----------|-----------|--------------|----------|-------------|"
          "------------------------------------------|")
    for a, b in (("even", "odd"), ("odd", "even")):
        best = max(results, key=lambda k: f1(results[k][a]))
        held = f1(results[best][b])
        mine = f1(results[cur][b]) if cur in results else float("nan")
        print(f"| {a:<9} | {best[0]:9} | {best[1]:9.2f} | {best[2]:12} | {f1(results[best][a]):8.3f} | {held:11.3f} | "
              f"{mine:40.3f} |")


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true", help="per-phrase and per-seed tables")
    ap.add_argument("--cache", action="store_true", help="keep the encodings in the temp dir between runs")
    args = ap.parse_args()

    t0 = time.perf_counter()
    params = rank_params(Settings(_env_file=None))  # what a new install ships
    emb = Embedder()
    corpus = load_corpus()
    phrases = load_labels(corpus)
    pooled, pooled_days, pooled_from = load_pooled_listings()
    with_kw = [i for i, p in enumerate(pooled) if p.ai_keywords]
    kw_queries = [", ".join(pooled[i].ai_keywords) for i in with_kw]
    docs = [paper_text(t, a) for t, a in zip(corpus.titles, corpus.abstracts)]
    pooled_docs = [paper_text(p.title, p.abstract) for p in pooled]

    T, A, D, PH, PD, KQ = encode_all(emb, args.cache, list(corpus.titles), list(corpus.abstracts), docs,
                                     [p.text for p in phrases], pooled_docs, kw_queries)
    t_enc = time.perf_counter() - t0

    n = len(corpus)
    ups = corpus_upvotes(n)
    ref = Reference.build(docs, D, ups)
    G = grade_matrix(phrases, n)

    print(f"\nRanking quality (real data; model {emb.name}; encoding took {t_enc:.1f} s)")
    print(f"corpus: tests/fixtures/corpus/papers-a.jsonl ({n} papers); labels: {LABELS.relative_to(ROOT)} "
          f"({len(phrases)} phrases, {int((G >= 1).sum())} graded pairs); listings: {pooled_from}")
    print(f"shipped params: {params}\n")

    # ------------------------------------------------------------------ 1. one known answer per query
    abs_ref = Reference.build(list(corpus.abstracts), A)
    t_q = Queries.build(abs_ref, list(corpus.titles), T)
    order = with_kw + [i for i in range(len(pooled)) if i not in set(with_kw)]
    kw_ref = Reference.build([pooled_docs[i] for i in order], PD[order])
    k_q = Queries.build(kw_ref, kw_queries, KQ)
    print("1. One known answer per query\n")
    print("| task / method                                          | n    | R@1    | R@5    | MRR    |")
    print("|--------------------------------------------------------|------|--------|--------|--------|")
    for task, q, size in ((f"title -> abstract ({n})", t_q, n), (f"keywords -> paper ({len(pooled)} pooled)", k_q, len(kw_queries))):
        for name, scorer in SCORERS.items():
            m = known_answer(scorer(q))
            print(f"| {task + ', ' + name:<54} | {size:>4} | {m[0]:6.3f} | {m[1]:6.3f} | {m[2]:6.3f} |")

    # ------------------------------------------------------------------ 2. short phrases
    pq = Queries.build(ref, [p.text for p in phrases], PH)
    pickers = ranking_pickers(params)
    per = {name: graded_metrics(pk, ref, pq, G) for name, pk in pickers.items()}
    print_graded(f"\n2. Short phrases: {len(phrases)} hand-graded phrases vs the {n} papers (one day, top {MAX_PAPERS}; "
                 "shipped = defaults incl. threshold and top-up)\n", per, len(phrases))
    print("\nFailures (nDCG@10 < 0.3):")
    for name, m in per.items():
        bad = [f"{phrases[k].text} ({m[k, 0]:.2f})" for k in np.argsort(m[:, 0]) if m[k, 0] < 0.3]
        print(f"  {name}: {len(bad)}: " + ", ".join(bad))
    if args.verbose:
        names = list(per)
        info = [f"{sum(g == 2 for g in p.grades.values())}c {sum(g == 1 for g in p.grades.values())}p "
                f"{p.difficulty.split(':')[0].split(',')[0]}" for p in phrases]
        labels = [p.text for p in phrases]
        print_per_query(names, labels, per, 0, "nDCG@10", info)
        print_per_query(names, labels, per, 1, "P@5", info)
        print_per_query(names, labels, per, 2, "recall@10", info)

    # ------------------------------------------------------------------ 3. seed paper
    seeds, seed_grades, seed_info = [], [], []
    for i in range(n):
        own = [k for k in range(len(phrases)) if G[k, i] == 2]
        if not own:
            continue
        g = G[own].max(axis=0)
        g[i] = 0
        if (g >= 1).any():
            seeds.append(i)
            seed_grades.append(g)
            seed_info.append("; ".join(phrases[k].text for k in own))
    SG = np.array(seed_grades)
    sq = Queries.build(ref, [docs[i] for i in seeds], D[seeds], exclude=seeds)
    per_seed = {name: graded_metrics(pk, ref, sq, SG) for name, pk in pickers.items()}
    print_graded(f"\n3. Seed paper -> similar papers: {len(seeds)} seeds (papers central to >= 1 phrase); query = the "
                 "seed's title + abstract, relevant = graded for the seed's phrases\n", per_seed, len(seeds))
    if args.verbose:
        print_per_query(list(per_seed), [corpus.titles[i] for i in seeds], per_seed, 0, "Seed nDCG@10", seed_info)

    # ------------------------------------------------------------------ 4. calibration
    cos, hyb = pq.cos, hybrid(HYBRID_W)(pq)
    print(f"\n4. Calibration on the {G.size} (phrase, paper) pairs\n")
    print("| score                    | grade | pairs | p10   | p25   | p50   | p75   | p90   |")
    print("|--------------------------|-------|-------|-------|-------|-------|-------|-------|")
    for sname, S in (("MiniLM cosine", cos), (f"hybrid cos+{HYBRID_W} BM25n", hyb), ("BM25n", pq.bm25n)):
        for g in (2, 1, 0):
            v = S[G == g]
            qs = quantiles(v)
            print(f"| {sname:<24} | {g:>5} | {len(v):>5} | " + " | ".join(f"{x:5.3f}" for x in qs) + " |")
    pos = G >= 1
    even = np.arange(len(phrases)) % 2 == 0
    print("\nThreshold maximising F1 of 'graded >= 1' (in-sample on all phrases; 'CV' = chosen on even-numbered "
          "phrases,\nscored on odd ones, and the reverse: F1 of each held-out half)\n")
    print("| score                    | threshold | precision | recall | F1    | CV thresholds | CV F1         "
          "| share passing: g2 / g1 / g0 | passing per 28-paper day |")
    print("|--------------------------|-----------|-----------|--------|-------|---------------|---------------"
          "|-----------------------------|--------------------------|")
    cal_rows = [("MiniLM cosine", cos)] + [(f"hybrid cos+{w} BM25n", hybrid(w)(pq)) for w in (0.25, 0.5, 1.0)]
    best: dict[str, float] = {}
    for sname, S in cal_rows:
        t = best_f1_threshold(S.ravel(), pos.ravel())
        best[sname] = t
        p, r, f = prf_at(S.ravel(), pos.ravel(), t)
        ta = best_f1_threshold(S[even].ravel(), pos[even].ravel())
        tb = best_f1_threshold(S[~even].ravel(), pos[~even].ravel())
        fa = prf_at(S[~even].ravel(), pos[~even].ravel(), ta)[2]
        fb = prf_at(S[even].ravel(), pos[even].ravel(), tb)[2]
        sh = [(S[G == g] >= t).mean() for g in (2, 1, 0)]
        per_day = (S >= t).sum(axis=1).mean() * DAY_SIZE / n
        print(f"| {sname:<24} | {t:9.3f} | {p:9.3f} | {r:6.3f} | {f:5.3f} | {ta:6.3f} {tb:6.3f} | {fa:6.3f} {fb:6.3f} "
              f"| {sh[0]:7.3f} / {sh[1]:5.3f} / {sh[2]:5.3f} | {per_day:24.2f} |")
    for label, S, t in ((f"cosine at {BEFORE_13.min_relevance} (before)", cos, BEFORE_13.min_relevance),
                        (f"shipped: hyb {params.lexical_weight} at {params.min_relevance}",
                         hybrid(params.lexical_weight)(pq), params.min_relevance)):
        p, r, f = prf_at(S.ravel(), pos.ravel(), t)
        sh = [(S[G == g] >= t).mean() for g in (2, 1, 0)]
        per_day = (S >= t).sum(axis=1).mean() * DAY_SIZE / n
        print(f"| {label:<24} | {t:9.3f} | {p:9.3f} | {r:6.3f} | {f:5.3f} | "
              f"{'':>13} | {'':>13} | {sh[0]:7.3f} / {sh[1]:5.3f} / {sh[2]:5.3f} | {per_day:24.2f} |")

    # ------------------------------------------------------------------ 5. subscriber-days
    days = make_days(n)
    t_h = best[f"hybrid cos+{HYBRID_W} BM25n"]
    hyb_s = hybrid(HYBRID_W)
    rows: list[tuple[str, Picker]] = [
        ("shipped before issue 13", shipped(BEFORE_13)),
        ("shipped (defaults)", shipped(params)),
        ("shipped, min_picks=0 (no top-up)", shipped(dataclasses.replace(params, min_picks=0))),
        ("shipped, trending 0, min_picks=0", shipped(dataclasses.replace(params, min_picks=0, trending_weight=0.0))),
        (f"cosine >= {BEFORE_13.min_relevance} (no MMR, trend, top-up)",
         thresholded(SCORERS["MiniLM cosine"], BEFORE_13.min_relevance)),
        (f"cosine >= {best['MiniLM cosine']:.3f} (its F1-best)", thresholded(SCORERS["MiniLM cosine"], best["MiniLM cosine"])),
    ]
    for t in sorted({0.40, 0.45, 0.50, t_h, 0.60}):
        rows.append((f"hybrid {HYBRID_W} >= {t:.3f}" + (" (F1-best)" if t == t_h else ""), thresholded(hyb_s, t)))
    for t in sorted({0.45, t_h}):
        rows.append((f"hybrid {HYBRID_W} >= {t:.3f}, top-up 3 by hybrid", thresholded(hyb_s, t, top_up=3)))
    print(f"\n5. Subscriber-days: {len(days)} days of {DAY_SIZE} papers (fixed permutation of the corpus), each phrase one "
          f"subscriber, max_papers {MAX_PAPERS}.\n   Upvotes drawn from a real listing's (corpus has none). hybrid rows: "
          "threshold on cos + 0.5 BM25n, no trending, no MMR;\n   'top-up 3 by hybrid' fills digests with fewer than 3 picks with the best-scored remaining papers (fillers).\n")
    print_digest([(name, simulate(pk, ref, pq, G, days)) for name, pk in rows])
    print("\n  top-1 rel: first pick graded >= 1; delivered: relevant mailed / relevant listed; none rel: no relevant "
          "mailed\n  though one was listed; fill. while missed: fillers sent on subscriber-days that left a relevant "
          "paper out;\n  picks: mean per subscriber-day with something relevant listed; precision: share of all picks "
          "graded >= 1.")

    # ------------------------------------------------------------------ 6. trending weight
    print("\n6. Trending weight (score = relevance + w x log1p(upvotes)/max in the day); 'upvote pct' = mean "
          "percentile of the\n   picks' upvotes in their day. Upvotes are independent of relevance here (drawn "
          "from a real listing's).\n")
    print("| ranking                                  | w    | top-1 rel | delivered | nDCG@10 | precision | upvote pct |")
    print("|------------------------------------------|------|-----------|-----------|---------|-----------|------------|")
    for w in (0.0, 0.02, 0.05, 0.1, 0.2):
        for name, pk in (("shipped before issue 13", shipped(dataclasses.replace(BEFORE_13, trending_weight=w))),
                         ("shipped (defaults otherwise)", shipped(dataclasses.replace(params, trending_weight=w))),
                         (f"hybrid {HYBRID_W} >= {t_h:.3f}", thresholded(hyb_s, t_h, trending_weight=w)),
                         (f"hybrid {HYBRID_W} >= {t_h:.3f}, top-up 3 by hybrid",
                          thresholded(hyb_s, t_h, trending_weight=w, top_up=3))):
            f = simulate(pk, ref, pq, G, days)
            print(f"| {name:<40} | {w:<4} | {f.top1:9.3f} | {f.delivered:9.3f} | {f.ndcg:7.3f} | {f.precision:9.3f} | "
                  f"{f.upvote_pct:10.1f} |")

    # ------------------------------------------------------------------ 7. keyword task: trending, spreads
    idx = {p.arxiv_id: i for i, p in enumerate(pooled)}
    kw_pos = {i: k for k, i in enumerate(with_kw)}
    print(f"\n7. Trending weight on the keyword task within each real listing day ({pooled_from}, real upvotes)\n")
    print("| w     | R@1    | R@5    | MRR    | upvote pct of top-5 |")
    print("|-------|--------|--------|--------|---------------------|")
    for w in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0):
        ranks, pct = [], []
        for ids in pooled_days.values():
            members = [idx[a] for a in ids]
            if len(members) < 5:
                continue
            up = np.array([pooled[m].upvotes for m in members], dtype=np.float32)
            trend = np.log1p(up) / max(np.log1p(up).max(), 1e-9)
            upct = (up[:, None] >= up[None, :]).mean(axis=1) * 100
            for local, m in enumerate(members):
                if m not in kw_pos:
                    continue
                s = KQ[kw_pos[m]] @ PD[members].T + w * trend
                ranks.append(int((s > s[local]).sum()) + 1)
                pct.append(float(upct[np.argsort(-s)[:5]].mean()))
        r = np.array(ranks)
        print(f"| {w:<5} | {(r <= 1).mean():6.3f} | {(r <= 5).mean():6.3f} | {(1 / r).mean():6.3f} | "
              f"{np.mean(pct):>19.1f} |")
    sim_kw = k_q.cos
    rel = np.diag(sim_kw[:, : len(kw_queries)])
    mask = np.ones_like(sim_kw, dtype=bool)
    mask[np.arange(len(kw_queries)), np.arange(len(kw_queries))] = False
    print("\nCosine similarity spread (MiniLM)\n")
    print("| pairs                               | p10   | p50   | p90   | share >= 0.25 |")
    print("|-------------------------------------|-------|-------|-------|---------------|")
    for name, v in (("keyword interest vs its paper", rel), ("keyword interest vs distractors", sim_kw[mask]),
                    ("title vs its abstract", np.diag(T @ A.T)),
                    ("title vs other abstracts", (T @ A.T)[~np.eye(len(T), dtype=bool)]),
                    ("short phrase vs grade-2 paper", cos[G == 2]), ("short phrase vs grade-1 paper", cos[G == 1]),
                    ("short phrase vs grade-0 paper", cos[G == 0])):
        p10, p50, p90 = np.percentile(v, [10, 50, 90])
        print(f"| {name:<35} | {p10:5.2f} | {p50:5.2f} | {p90:5.2f} | {(v >= 0.25).mean():>13.3f} |")
    # ------------------------------------------------------------------ 8. calibration of the shipped ranking
    print(f"\n8. Calibration of the shipped ranking (rank_subscribers: hybrid, MMR, trending {params.trending_weight}, "
          f"top-up to {params.min_picks}) on the subscriber-days\n   of section 5; the 12 best settings by digest F1, "
          "then the shipped one\n")
    calibrate(ref, phrases, PH, G, days, params)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
