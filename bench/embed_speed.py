"""Encoding speed in bf16 (torch autocast on CPU) against fp32, threads pinned, and what bf16 changes in the
rankings of the fixtures (issue 13: "bf16 done right").

Speed: the same real paper texts (title + abstract, the corpus) encoded by the shipped model in fp32 and in
bf16, alternately, REPEAT times each, with torch.set_num_threads(THREADS); printed: papers/s (median) of each
and the median of the per-pair ratios.

Quality: the 40 labelled phrases against the 224 corpus papers, relevance as shipped (cosine + w x BM25n),
top 10 per phrase with fp32 vectors and with bf16 vectors: same set, same order, and nDCG@10 of each.

Run: .venv/bin/python bench/embed_speed.py [--papers N] [--repeat N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.bm25 import Lexicon, bm25n  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.embed import Embedder, paper_text  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers-a.jsonl"
LABELS = ROOT / "bench" / "labels" / "short_phrases.json"


def ndcg10(order: np.ndarray, grades: dict[int, int]) -> float:
    gain = [2.0 ** grades.get(int(i), 0) - 1 for i in order[:10]]
    dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gain))
    ideal = sorted((2.0 ** g - 1 for g in grades.values()), reverse=True)[:10]
    idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", type=int, default=64, help="papers per timed pass")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with open(CORPUS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    docs = [paper_text(r["title"], r["abstract"]) for r in rows]
    fp32, bf16 = Embedder(), Embedder(bf16=True)
    fp32.encode(["warm up"])
    bf16.encode(["warm up"])
    batch = docs[: args.papers]
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    ratios = []
    for _ in range(args.repeat):
        for name, emb in (("fp32", fp32), ("bf16", bf16)):
            t = time.perf_counter()
            emb.encode(batch)
            rates[name].append(len(batch) / (time.perf_counter() - t))
        ratios.append(rates["bf16"][-1] / rates["fp32"][-1])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(batch)} papers a pass, "
          f"{args.repeat} alternating passes each")
    print(f"fp32 {statistics.median(rates['fp32']):.1f} papers/s, bf16 {statistics.median(rates['bf16']):.1f} "
          f"papers/s, bf16 / fp32 speed: median {statistics.median(ratios):.2f}x "
          f"(each pair: {', '.join(f'{r:.2f}' for r in ratios)})\n")

    phrases = json.loads(LABELS.read_text(encoding="utf-8"))["phrases"]
    w = Settings(_env_file=None).rank_lexical_weight
    lex = Lexicon.from_texts(docs)
    lexical = bm25n([lex.query(p["phrase"]) for p in phrases], lex.papers(docs))
    tops, ndcgs = {}, {}
    for name, emb in (("fp32", fp32), ("bf16", bf16)):
        rel = emb.encode([p["phrase"] for p in phrases]) @ emb.encode(docs).T + w * lexical
        tops[name] = np.argsort(-rel, axis=1, kind="stable")[:, :10]
        ndcgs[name] = np.mean([ndcg10(tops[name][k], {r["index"]: r["grade"] for r in p["relevant"]})
                               for k, p in enumerate(phrases)])
    same_set = np.mean([set(a) == set(b) for a, b in zip(tops["fp32"], tops["bf16"])])
    same_order = np.mean([(a == b).all() for a, b in zip(tops["fp32"], tops["bf16"])])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["fp32"], tops["bf16"])])
    print(f"{len(phrases)} labelled phrases x {len(docs)} papers, relevance = cosine + {w} x BM25n, top 10:")
    print(f"same set {same_set:.3f}, same order {same_order:.3f}, mean overlap {overlap:.3f}; "
          f"nDCG@10 fp32 {ndcgs['fp32']:.3f}, bf16 {ndcgs['bf16']:.3f}")


if __name__ == "__main__":
    main()
