"""Speed of ranking (digest.rank.rank_subscribers) for 1k, 10k and 100k synthetic subscribers x 300 papers.

Interest vectors are real corpus titles encoded once by the model, drawn at random (1-3 per subscriber);
papers are 300 real papers (the corpus abstracts, then pooled listing papers). Prints seconds (best of
3), peak memory of the ranking (tracemalloc, a separate run) and the ratio to a bare numpy matmul of the
same shapes (all interest vectors x papers). Goal: 100k x 300 under 2 s on a 2-core machine.

Run: .venv/bin/python bench/rank_speed.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"  # real data, in the repository

from digest.embed import Embedder, paper_text  # noqa: E402
from digest.rank import PaperMatrix, Profile, rank_subscribers  # noqa: E402
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


def profiles_for(n: int, title_vecs: np.ndarray, rng: np.random.Generator, shared: bool = True) -> list[Profile]:
    """``shared``: interests are identified by their text (as build_profiles does), so subscribers with
    the same interest share one vector; otherwise every vector counts as distinct (worst case)."""
    empty = np.zeros((0, title_vecs.shape[1]), np.float32)
    out = []
    for sid in range(n):
        k = int(rng.integers(1, 4))
        pick = rng.choice(len(title_vecs), size=k, replace=False)
        keys = () if shared else tuple(f"{sid}:{i}" for i in pick)
        out.append(Profile(sid, title_vecs[pick], tuple(f"interest: {i}" for i in pick), empty, max_papers=10,
                           keys=keys))
    return out


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    emb = Embedder()
    t = time.perf_counter()
    titles, docs, upvotes = real_texts()
    # The vectors are cached in the temp dir between runs (keyed by model and texts): encoding is not
    # what this benchmark measures.
    import hashlib
    import tempfile

    key = hashlib.sha256("\x00".join([emb.name, *titles, *docs]).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"papers-digest-rank-speed-{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            title_vecs, paper_vecs = z["titles"], z["papers"]
    else:
        title_vecs = emb.encode(titles)
        paper_vecs = emb.encode(docs)
        np.savez(cache, titles=title_vecs, papers=paper_vecs)
    print(f"encoded {len(titles)} titles and {len(docs)} papers once in {time.perf_counter() - t:.1f} s "
          f"(not part of the timings); numpy {np.__version__}, {os.cpu_count()} cpus\n")
    n = len(docs)
    ids = tuple(f"2608.{i:05d}" for i in range(n))
    dates = np.array([DAY - timedelta(days=i % 3) for i in range(n)], dtype="datetime64[D]")
    papers = PaperMatrix(ids, paper_vecs, np.array(upvotes), dates, tuple(d.lower() for d in docs))
    rng = np.random.default_rng(42)

    print("| subscribers     | papers | rank s | + Pick objects s | peak MiB | bare matmul s | rank / matmul |")
    print("|-----------------|--------|--------|------------------|----------|---------------|---------------|")
    for count, shared in ((1_000, True), (10_000, True), (100_000, True), (100_000, False)):
        profiles = profiles_for(count, title_vecs, rng, shared)
        window = {sid: DAY - timedelta(days=2) for sid in range(0, count, 2)}  # half have a 3-day window
        sent = {sid: {ids[(sid * 7) % n], ids[(sid * 13) % n]} for sid in range(0, count, 3)}

        def run():  # type: ignore[no-untyped-def]
            return rank_subscribers(profiles, papers, DAY, exclude=sent, window_start=window)

        secs = best_of(run)
        ranking = run()
        t = time.perf_counter()
        ranking.as_dict()
        picks_s = time.perf_counter() - t
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        Q = np.concatenate([p.positives for p in profiles])
        P = papers.vectors
        mm = best_of(lambda: Q @ P.T)
        label = f"{count:,}" + ("" if shared else " (*)")
        print(f"| {label:>15} | {n:>6} | {secs:>6.3f} | {picks_s:>16.3f} | {peak:>8.0f} | {mm:>13.3f} | "
              f"{secs / mm:>13.1f} |")
    print("\n(*) no interest shared between subscribers: every vector compared with the papers (worst case).")
    print("Otherwise subscribers with the same interest text share one vector (224 distinct titles here).")
    print("'rank s' is the ranking entry point (filters, scores, MMR with interest quotas, all subscribers);")
    print("'+ Pick objects' is building the Pick dataclasses of every subscriber afterwards (Ranking.as_dict).")


if __name__ == "__main__":
    main()
