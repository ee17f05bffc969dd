"""Ranking quality on real data only: the corpus of 224 real papers and the real Hugging Face listings.

1. title -> abstract retrieval over the corpus (each title should find its own abstract among 224);
2. keyword interest -> paper over the pooled listings (a paper's ai_keywords joined as the interest, that
   paper the relevant one, every other pooled fixture paper a distractor);
both with the model (all-MiniLM-L6-v2, as ranked in production) and a TF-IDF baseline (scikit-learn).
3. the trending weight: the keyword-interest task within each day's listing (the real candidate set),
   score = relevance + w x log1p(upvotes) normalised in the day, for growing w: recall against the
   popularity of what is picked.
4. the relevance threshold: how relevant and distractor similarities are spread.

Run: .venv/bin/python bench/ranking_quality.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"  # real data, in the repository

from digest.embed import Embedder, paper_text  # noqa: E402
from digest.sources.huggingface import load_listing_file  # noqa: E402


def metrics(sim: np.ndarray) -> tuple[float, float, float]:
    """sim[i, j]: query i vs document j; document i is the relevant one."""
    target = sim[np.arange(len(sim)), np.arange(len(sim))]
    rank = (sim > target[:, None]).sum(axis=1) + 1  # ties count for the query
    return float((rank <= 1).mean()), float((rank <= 5).mean()), float((1.0 / rank).mean())


def tfidf_sim(queries: list[str], docs: list[str]) -> np.ndarray:
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", ngram_range=(1, 2), min_df=1)
    d = vec.fit_transform(docs)
    q = vec.transform(queries)
    return (q @ d.T).toarray()


def load_corpus() -> tuple[list[str], list[str]]:
    titles, abstracts = [], []
    with open(FIXTURES / "corpus" / "papers-a.jsonl") as f:
        for line in f:
            o = json.loads(line)
            titles.append(o["title"])
            abstracts.append(o["abstract"])
    return titles, abstracts


def load_pooled():  # type: ignore[no-untyped-def]
    seen: dict[str, object] = {}
    days: dict[str, list[str]] = {}
    for f in sorted((FIXTURES / "hf").iterdir()):
        if f.suffix not in (".json", ".html"):
            continue
        listing = load_listing_file(f)
        for p in listing.papers:
            if p.arxiv_id not in seen:
                seen[p.arxiv_id] = p
                days.setdefault(listing.listing_date.isoformat(), []).append(p.arxiv_id)
    return list(seen.values()), days


def row(name: str, m: tuple[float, float, float], n: int) -> str:
    return f"| {name:<44} | {n:>4} | {m[0]:>6.3f} | {m[1]:>6.3f} | {m[2]:>6.3f} |"


def main() -> None:
    t0 = time.perf_counter()
    emb = Embedder()
    titles, abstracts = load_corpus()
    papers, days = load_pooled()
    with_kw = [i for i, p in enumerate(papers) if p.ai_keywords]
    queries = [", ".join(papers[i].ai_keywords) for i in with_kw]
    docs = [paper_text(p.title, p.abstract) for p in papers]

    T = emb.encode(titles)
    A = emb.encode(abstracts)
    D = emb.encode(docs)
    Q = emb.encode(queries)
    t_enc = time.perf_counter() - t0

    # keyword query i -> document with_kw[i]: reorder the documents so the relevant one is on the diagonal
    order = with_kw + [i for i in range(len(papers)) if i not in set(with_kw)]
    sim_kw = Q @ D[order].T
    tf_kw = tfidf_sim(queries, [docs[i] for i in order])

    print(f"\nRanking quality (real data; model {emb.name}; encoding took {t_enc:.1f} s)\n")
    print("| task / method                                | n    | R@1    | R@5    | MRR    |")
    print("|----------------------------------------------|------|--------|--------|--------|")
    print(row(f"title -> abstract ({len(titles)} corpus), MiniLM", metrics(T @ A.T), len(titles)))
    print(row(f"title -> abstract ({len(titles)} corpus), TF-IDF", metrics(tfidf_sim(titles, abstracts)), len(titles)))
    print(row(f"keywords -> paper ({len(papers)} pooled), MiniLM", metrics(sim_kw), len(queries)))
    print(row(f"keywords -> paper ({len(papers)} pooled), TF-IDF", metrics(tf_kw), len(queries)))

    # ---------------------------------------------------------------- trending weight, per day listing
    idx = {p.arxiv_id: i for i, p in enumerate(papers)}
    print("\nTrending weight w: keyword interest -> paper within its own day's listing (the real candidate")
    print("set), score = relevance + w x log1p(upvotes)/max in the day. 'upvote pct' = mean percentile of")
    print("the top-5 picks' upvotes in their day (50 = average paper, higher = more popular picks).\n")
    print("| w     | R@1    | R@5    | MRR    | upvote pct of top-5 |")
    print("|-------|--------|--------|--------|---------------------|")
    kw_pos = {i: k for k, i in enumerate(with_kw)}
    for w in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0):
        ranks, pct = [], []
        for ids in days.values():
            members = [idx[a] for a in ids]
            if len(members) < 5:
                continue
            up = np.array([papers[m].upvotes for m in members], dtype=np.float32)
            trend = np.log1p(up) / max(np.log1p(up).max(), 1e-9)
            upct = (up[:, None] >= up[None, :]).mean(axis=1) * 100  # percentile of each paper in its day
            for local, m in enumerate(members):
                if m not in kw_pos:
                    continue
                s = Q[kw_pos[m]] @ D[members].T + w * trend
                ranks.append(int((s > s[local]).sum()) + 1)
                pct.append(float(upct[np.argsort(-s)[:5]].mean()))
        r = np.array(ranks)
        print(f"| {w:<5} | {(r <= 1).mean():>6.3f} | {(r <= 5).mean():>6.3f} | {(1 / r).mean():>6.3f} | "
              f"{np.mean(pct):>19.1f} |")

    # ---------------------------------------------------------------- relevance threshold
    rel = np.diag(sim_kw[:, : len(queries)])
    mask = np.ones_like(sim_kw, dtype=bool)
    mask[np.arange(len(queries)), np.arange(len(queries))] = False
    dis = sim_kw[mask]
    # short free-text interests, as subscribers type them, against the 2026-08-18 listing
    print("\nRelevance threshold: cosine similarity spread (MiniLM)\n")
    print("| pairs                               | p10   | p50   | p90   | share >= 0.25 |")
    print("|-------------------------------------|-------|-------|-------|---------------|")
    for name, v in (("keyword interest vs its paper", rel), ("keyword interest vs distractors", dis),
                    ("title vs its abstract", np.diag(T @ A.T)),
                    ("title vs other abstracts", (T @ A.T)[~np.eye(len(T), dtype=bool)])):
        p10, p50, p90 = np.percentile(v, [10, 50, 90])
        print(f"| {name:<35} | {p10:5.2f} | {p50:5.2f} | {p90:5.2f} | {(v >= 0.25).mean():>13.3f} |")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
