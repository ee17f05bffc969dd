"""BM25 over a reference corpus (bm25s, Lucene variant, Snowball stemming, English stop words) and
BM25n, the BM25 score scaled to [0, 1) by the query's maximum attainable score.

bm25s (Lucene variant) scores a document d for a query q as

    BM25(q, d) = sum over the query's tokens t of  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

(tokens counted with repetition; N, df and avgdl from the reference corpus). Each term's fraction
tf / (tf + k1 * (...)) is below 1 for every tf and every length, and tends to 1 as tf grows, so the
query's maximum attainable score (its supremum over all documents) is

    max(q) = sum over the query's tokens t of idf(t)

and BM25n(q, d) = BM25(q, d) / max(q) lies in [0, 1). A query token that no reference document contains
counts in max(q) with df = 0 (it is part of what the subscriber asked for) and adds 0 to BM25(q, d).
max(q) depends on the query and the reference corpus only, never on the day's candidate papers.

(The query taken as its own document is not an upper bound: with |q| << avgdl a document that repeats a
term five times beats it, so that normaliser can exceed 1.)
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

K1 = 1.5
B = 0.75


class Lexical:
    """A BM25 index of ``docs`` (the reference corpus), scoring any query against every document."""

    def __init__(self, docs: Sequence[str]) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        tok = bm25s.tokenize(list(docs), stopwords="en", stemmer=self._stemmer, show_progress=False)
        self.n = len(docs)
        self.retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
        self.retriever.index(tok, show_progress=False)
        self.vocab: dict[str, int] = dict(self.retriever.vocab_dict)
        df = np.zeros(len(self.vocab), dtype=np.float64)
        for ids in tok.ids:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        self._df = df

    def tokens(self, text: str) -> list[str]:
        out = bm25s.tokenize([text], stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)
        return list(out[0])

    def idf(self, token: str) -> float:
        j = self.vocab.get(token)
        df = self._df[j] if j is not None else 0.0
        return float(np.log(1.0 + (self.n - df + 0.5) / (df + 0.5)))

    def max_score(self, text: str) -> float:
        return sum(self.idf(t) for t in self.tokens(text))

    def scores(self, text: str) -> np.ndarray:
        """(n,) BM25 of the query against every document."""
        known = [t for t in self.tokens(text) if t in self.vocab]
        if not known:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(known), dtype=np.float32)

    def bm25(self, queries: Sequence[str]) -> np.ndarray:
        return np.stack([self.scores(q) for q in queries]) if queries else np.zeros((0, self.n), np.float32)

    def bm25n(self, queries: Sequence[str]) -> np.ndarray:
        """(Q, n) BM25 / the query's maximum attainable BM25, in [0, 1)."""
        raw = self.bm25(queries)
        top = np.array([self.max_score(q) for q in queries], dtype=np.float32)
        return np.where(top[:, None] > 0, raw / np.maximum(top[:, None], 1e-12), 0.0).astype(np.float32)
