"""Speed of ranking (digest.rank.rank_subscribers) as shipped, for 1k, 10k and 100k subscribers x 300 papers,
against the bare matmul of the same shapes, measured in the same run (issue 12).

Interests are real corpus titles (1-3 per subscriber), each with its vector (the model, encoded once) and
its BM25 terms (the product's hybrid relevance, idf over the 300 papers as the store's lexicon); papers are
300 real papers (the corpus abstracts, then pooled listing papers). Half the subscribers have a 3-day
window, a third have two papers already sent. The ranking runs with the shipped settings (digest/config.py).

"distinct": every subscriber's interest vectors are their own (keys differ: the worst case, as when 100k
people type 200k different phrases); "shared": subscribers with the same title share one vector.

For each size, the product (rank_subscribers) and the baseline (the bare matmul: all interest vectors x
all papers, float32, as one product) run alternately, REPEAT times each; printed: the median seconds of
each, the median of the per-pair ratios, peak memory of one ranking (tracemalloc), and the time to build
the Pick objects afterwards (Ranking.as_dict: the CLI and tests only; planning reads the arrays).
Goals: 100k distinct under 2 s, at most 1.5x the bare matmul.

Run: .venv/bin/python bench/rank_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"  # real data, in the repository

from digest.bm25 import Lexicon  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.embed import Embedder, paper_text  # noqa: E402
from digest.rank import PaperMatrix, Profile, RankParams, rank_subscribers  # noqa: E402
from digest.sources.huggingface import load_listing_file  # noqa: E402

N_PAPERS = 300
DAY = date(2026, 8, 18)


def real_texts() -> tuple[list[str], list[str], list[int]]:
    titles, docs, upvotes = [], [], []
    with open(FIXTURES / "corpus" / "papers-a.jsonl") as f:
        for line in f:
            o = json.loads(line)
            titles.append(o["title"])
            docs.append(paper_text(o["title"], o["abstract"]))
            upvotes.append(int(o.get("upvotes") or 0))
    seen = set(titles)
    for p in sorted((FIXTURES / "hf").iterdir()):
        if p.suffix not in (".json", ".html"):
            continue
        for paper in load_listing_file(p).papers:
            if len(docs) < N_PAPERS and paper.title not in seen:
                seen.add(paper.title)
                docs.append(paper_text(paper.title, paper.abstract))
                upvotes.append(paper.upvotes)
    return titles, docs[:N_PAPERS], upvotes[:N_PAPERS]


def profiles_for(n: int, titles: list[str], title_vecs: np.ndarray, lexicon: Lexicon, rng: np.random.Generator,
                 shared: bool) -> list[Profile]:
    empty = np.zeros((0, title_vecs.shape[1]), np.float32)
    terms = [lexicon.query(t) for t in titles]
    out = []
    for sid in range(n):
        k = int(rng.integers(1, 4))
        pick = rng.choice(len(title_vecs), size=k, replace=False)
        keys = () if shared else tuple(f"{sid}:{i}" for i in pick)
        out.append(Profile(sid, title_vecs[pick], tuple(f"interest: {titles[i]}" for i in pick), empty,
                           max_papers=10, keys=keys, terms=tuple(terms[i] for i in pick)))
    return out


def vectors(emb: Embedder, titles: list[str], docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded once and kept in the temp dir (keyed by model and texts): encoding is not measured here."""
    key = hashlib.sha256("\x00".join([emb.name, *titles, *docs]).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"papers-digest-rank-speed-{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["titles"], z["papers"]
    t, p = emb.encode(titles), emb.encode(docs)
    np.savez(cache, titles=t, papers=p)
    return t, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    emb = Embedder()
    t = time.perf_counter()
    titles, docs, upvotes = real_texts()
    title_vecs, paper_vecs = vectors(emb, titles, docs)
    lexicon = Lexicon.from_texts(docs)
    params = RankParams.from_settings(Settings(_env_file=None))
    print(f"vectors of {len(titles)} titles and {len(docs)} papers ready in {time.perf_counter() - t:.1f} s (not "
          f"timed); numpy {np.__version__}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"shipped params: {params}\n")
    n = len(docs)
    ids = tuple(f"2608.{i:05d}" for i in range(n))
    dates = np.array([DAY - timedelta(days=i % 3) for i in range(n)], dtype="datetime64[D]")
    base = PaperMatrix(ids, paper_vecs, np.array(upvotes), dates, tuple(d.lower() for d in docs))
    papers = dataclasses.replace(base, terms=lexicon.papers(docs))
    rng = np.random.default_rng(42)

    print(f"| subscribers      | papers | rank s (median) | bare matmul s | rank / matmul (median of {args.repeat}) "
          "| peak MiB | + Pick objects s |")
    print("|------------------|--------|-----------------|---------------|-------------------------------|"
          "----------|------------------|")
    for count, shared in ((1_000, False), (10_000, False), (100_000, False), (100_000, True)):
        profiles = profiles_for(count, titles, title_vecs, lexicon, rng, shared)
        window = {sid: DAY - timedelta(days=2) for sid in range(0, count, 2)}  # half have a 3-day window
        sent = {sid: {ids[(sid * 7) % n], ids[(sid * 13) % n]} for sid in range(0, count, 3)}
        Q = np.ascontiguousarray(np.concatenate([p.positives for p in profiles]), dtype=np.float32)
        P = np.ascontiguousarray(paper_vecs, dtype=np.float32)

        def run():  # type: ignore[no-untyped-def]
            return rank_subscribers(profiles, papers, DAY, exclude=sent, window_start=window, params=params)

        run()  # warm up
        ranks, mms, ratios = [], [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            run()
            r = time.perf_counter() - t
            t = time.perf_counter()
            Q @ P.T
            m = time.perf_counter() - t
            ranks.append(r)
            mms.append(m)
            ratios.append(r / m)
        ranking = run()
        t = time.perf_counter()
        ranking.as_dict()
        picks_s = time.perf_counter() - t
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        label = f"{count:,} " + ("shared" if shared else "distinct")
        print(f"| {label:>16} | {n:>6} | {statistics.median(ranks):>15.3f} | {statistics.median(mms):>13.3f} | "
              f"{statistics.median(ratios):>29.2f} | {peak:>8.0f} | {picks_s:>16.3f} |")
    print(f"\nbare matmul: all {{1-3 per subscriber}} interest vectors x {n} papers x 384, float32, one product.")
    print("'shared': the 224 distinct titles are 224 vectors for all subscribers (the matmul baseline still "
          "counts every subscriber's vectors).")


if __name__ == "__main__":
    main()
