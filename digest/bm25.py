"""The lexical half of relevance: BM25 (Lucene variant, as ``bm25s`` computes it) and BM25n, the BM25 score
scaled to [0, 1) by the query's maximum attainable score. Pure: no database, no model.

Tokens are what ``bm25s.tokenize(..., stopwords="en", stemmer=Stemmer("english"))`` gives: lower-cased
``\\b\\w\\w+\\b`` words, English stop words removed, Snowball-stemmed (tests/test_bm25.py checks the
equality on the corpus). For a query q and a paper d:

    BM25(q, d) = sum over the query's tokens t of  idf(t) * tfn(t, d)
    tfn(t, d)  = tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))      in [0, 1)
    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    BM25n(q, d) = BM25(q, d) / sum over the query's tokens t of idf(t)       in [0, 1)

(tokens counted with repetition). N, df and avgdl come from a ``Lexicon``: a reference corpus (the store's
papers, see ``digest.lexicon``), never the day's candidate papers, so a paper's score does not depend on
what else is listed that day. A query token no reference paper contains counts in the normaliser with
df = 0 (it is part of what the subscriber asked for).

The split between the two sides is what makes the ranking cheap: a query becomes a few (token, weight)
pairs with weight = idf / normaliser (``Lexicon.query``), a paper a column of tfn values
(``Lexicon.papers``), and BM25n of every query against every paper is one sparse-dense product.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

K1 = 1.5
B = 0.75
_WORDS = re.compile(r"(?u)\b\w\w+\b")
_STOP = frozenset(STOPWORDS_EN)


class Tokenizer:
    """bm25s' English tokenization with a stem cache (stemming each distinct word once)."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._stems: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _WORDS.findall(text.lower()) if w not in _STOP]
        stems = self._stems
        missing = [w for w in words if w not in stems]
        if missing:
            uniq = list(dict.fromkeys(missing))
            stems.update(zip(uniq, self._stemmer.stemWords(uniq)))
        return [stems[w] for w in words]


_tokenizer = Tokenizer()


def tokenize(text: str) -> list[str]:
    return _tokenizer(text)


def document(title: str, abstract: str, keywords: Iterable[str] = ()) -> str:
    """What a paper is to BM25 (and to keyword filters): title, abstract and AI keywords."""
    return " ".join((title, abstract, " ".join(keywords)))


@dataclass(frozen=True)
class QueryTerms:
    """One query as BM25n needs it: distinct tokens and weight = count x idf / the query's max score."""

    tokens: tuple[str, ...]
    weights: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.tokens)


NO_TERMS = QueryTerms((), ())


@dataclass(frozen=True)
class PaperTerms:
    """The candidate papers' side: ``tfn[vocab[t], j]`` = tfn(t, paper j), 0 where t is absent."""

    vocab: Mapping[str, int]
    tfn: np.ndarray  # (V, n) float32

    @property
    def n(self) -> int:
        return int(self.tfn.shape[1])


@dataclass(frozen=True)
class Lexicon:
    """Reference statistics: how many papers, their total length in tokens, and each token's document
    frequency."""

    n_docs: int
    total_len: int
    df: Mapping[str, int] = field(default_factory=dict)
    k1: float = K1
    b: float = B

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_docs if self.n_docs else 1.0

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Lexicon:
        counts: Counter[str] = Counter()
        n = total = 0
        for text in texts:
            toks = tokenize(text)
            n += 1
            total += len(toks)
            counts.update(set(toks))
        return cls(n, total, dict(counts))

    def updated(self, texts: Iterable[str]) -> Lexicon:
        """These statistics with ``texts`` added as more reference papers."""
        more = Lexicon.from_texts(texts)
        df = dict(self.df)
        for t, c in more.df.items():
            df[t] = df.get(t, 0) + c
        return Lexicon(self.n_docs + more.n_docs, self.total_len + more.total_len, df, self.k1, self.b)

    def idf(self, token: str) -> float:
        df = self.df.get(token, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))

    def query(self, text: str) -> QueryTerms:
        counts = Counter(tokenize(text))
        idf = {t: self.idf(t) for t in counts}
        top = sum(c * idf[t] for t, c in counts.items())
        if top <= 0:
            return NO_TERMS
        return QueryTerms(tuple(counts), tuple(c * idf[t] / top for t, c in counts.items()))

    def papers(self, texts: Sequence[str]) -> PaperTerms:
        """tfn of every token of ``texts`` (the candidate papers) with this reference's avgdl."""
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lens = np.zeros(len(texts), dtype=np.float32)
        for j, text in enumerate(texts):
            toks = tokenize(text)
            lens[j] = len(toks)
            for t, c in Counter(toks).items():
                rows.append(vocab.setdefault(t, len(vocab)))
                cols.append(j)
                tfs.append(c)
        tfn = np.zeros((len(vocab), len(texts)), dtype=np.float32)
        if tfs:
            tf = np.asarray(tfs, dtype=np.float32)
            c = np.asarray(cols)
            norm = self.k1 * (1.0 - self.b + self.b * lens[c] / np.float32(self.avgdl))
            tfn[np.asarray(rows), c] = tf / (tf + norm)
        return PaperTerms(vocab, tfn)


def bm25n(queries: Sequence[QueryTerms], papers: PaperTerms) -> np.ndarray:
    """(Q, n) BM25n of every query against every paper (a query with no terms scores 0)."""
    out = np.zeros((len(queries), papers.n), dtype=np.float32)
    for i, q in enumerate(queries):
        for t, w in zip(q.tokens, q.weights):
            r = papers.vocab.get(t)
            if r is not None:
                out[i] += np.float32(w) * papers.tfn[r]
    return out
