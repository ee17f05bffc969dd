"""Explanations you can read: beside "matches your interest X", the sentence of the abstract that matches X
best, chosen by the ranking's own hybrid relevance (``digest.rank``): cosine of the sentence's vector with
X's + ``lexical_weight`` x BM25n of X against the sentence, with the store's lexicon (``digest.bm25``; a
sentence is scored as the ranking scores a paper's text).

Honest by construction: a sentence is looked for only when an interest decided the pick (the reasons
``interest: X`` and ``closest: interest: X`` that ``digest.rank`` gives), for that interest and no other.
A pick decided by a seed paper, a vote, the trending or the rising signal gets none, and neither does a pick
whose best sentence scores under ``floor`` (the relevance below which the ranking says a match means
nothing): its match was in the title or the AI keywords, not in a sentence that could be quoted.

Cheap: a paper's abstract is split (pysbd) and its sentences encoded once per model and precision, cached
in the store (``sentence_embeddings``) and redone only when its title or abstract changes; only papers
that an interest picked are split at all. Choosing is then one small matrix product per paper for all the
interests that picked it. The interest vectors come from the interest cache the ranking filled.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from digest.bm25 import Lexicon, bm25n
from digest.embed import Embedder, encode_texts
from digest.models import Paper, Pick
from digest.text import trim
from digest.store.sentences import SentenceVectors, save_sentence_vectors, sentence_vectors

MAX_SENTENCES = 64  # sentences kept per abstract (real abstracts have 5-15)
MIN_WORDS = 4  # shorter pieces ("2)", "Code:") are never quoted
EVIDENCE_CHARS = 300  # a longer sentence is quoted cut at a word boundary, with an ellipsis
_WORD = re.compile(r"\w+")
_INTEREST = "interest:"
_CLOSEST = "closest:"

_segmenter_lock = threading.Lock()
_segmenter = None


def split_sentences(abstract: str) -> tuple[str, ...]:
    """The sentences of ``abstract`` that could be quoted: pysbd's boundaries, whitespace collapsed, pieces
    of fewer than ``MIN_WORDS`` words left out, at most ``MAX_SENTENCES``."""
    import pysbd

    global _segmenter
    text = " ".join(abstract.split())
    if not text:
        return ()
    with _segmenter_lock:  # one Segmenter, not known to be thread-safe
        if _segmenter is None:
            _segmenter = pysbd.Segmenter(language="en", clean=False)
        pieces = _segmenter.segment(text)
    out: list[str] = []
    for piece in pieces:
        s = " ".join(str(piece).split())
        if len(_WORD.findall(s)) >= MIN_WORDS and s not in out:
            out.append(s)
        if len(out) == MAX_SENTENCES:
            break
    return tuple(out)


def deciding_interest(reason: str) -> str | None:
    """The interest text that decided a pick, from its reason (``interest: X`` or ``closest: interest: X``),
    or ``None`` when something else did (seed paper, vote, trending, rising)."""
    r = reason.strip()
    if r.startswith(_CLOSEST):
        r = r[len(_CLOSEST):].strip()
    if r.startswith(_INTEREST):
        text = r[len(_INTEREST):].strip()
        return text or None
    return None


def quote(sentence: str, limit: int = EVIDENCE_CHARS) -> str:
    """``sentence`` as shown: cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    return trim(sentence, limit)


def paper_sentences(session: Session, embedder: Embedder, papers: Iterable[Paper]) -> dict[str, SentenceVectors]:
    """The sentences and vectors of ``papers``: from the cache when it holds them for the paper's current
    text, else split and encoded now (one ``encode`` call for all) and cached. Papers without a quotable
    sentence are absent."""
    wanted = {p.arxiv_id: p for p in papers}
    cached = sentence_vectors(session, embedder.name, embedder.precision, wanted)
    out = {a: sv for a, sv in cached.items() if sv.content_hash == wanted[a].content_hash}
    todo = [(p, split_sentences(p.abstract)) for a, p in wanted.items() if a not in out]
    flat = [s for _, sentences in todo for s in sentences]
    if not todo:
        return {a: sv for a, sv in out.items() if sv.sentences}
    vecs = embedder.encode(flat) if flat else np.zeros((0, 0), np.float32)
    dim = int(vecs.shape[1]) if flat else embedder.dim
    new: dict[str, SentenceVectors] = {}
    i = 0
    for p, sentences in todo:
        block = vecs[i : i + len(sentences)] if sentences else np.zeros((0, dim), np.float32)
        i += len(sentences)
        new[p.arxiv_id] = SentenceVectors(p.content_hash, sentences, block)
    save_sentence_vectors(session, embedder.name, embedder.precision, new, dim)  # empty ones too: split once
    out.update(new)
    return {a: sv for a, sv in out.items() if sv.sentences}


@dataclass(frozen=True, slots=True)
class Evidence:
    """The sentence chosen for one (paper, interest) and its hybrid relevance to the interest."""

    sentence: str
    relevance: float


def best_sentences(sentences: SentenceVectors, interests: Sequence[str], vectors: Mapping[str, np.ndarray],
                   lexicon: Lexicon | None, lexical_weight: float) -> list[Evidence]:
    """For each of ``interests``, the sentence with the highest cosine + ``lexical_weight`` x BM25n (the
    ranking's relevance), and that relevance."""
    V = np.stack([vectors[t] for t in interests]).astype(np.float32, copy=False)
    score = V @ sentences.vectors.T  # (m, k)
    if lexicon is not None and lexical_weight:
        terms = lexicon.papers(list(sentences.sentences))
        score = score + np.float32(lexical_weight) * bm25n([lexicon.query(t) for t in interests], terms)
    best = score.argmax(axis=1)
    return [Evidence(sentences.sentences[int(j)], float(score[i, j])) for i, j in enumerate(best)]


def _choose(session: Session, embedder: Embedder, need: Mapping[str, set[str]], papers: Mapping[str, Paper], *,
            lexicon: Lexicon | None, lexical_weight: float, floor: float) -> dict[tuple[str, str], str]:
    """(arXiv id, interest text) -> the sentence quoted beside it, for each pair of ``need`` whose best
    sentence has a relevance of at least ``floor``."""
    if not need:
        return {}
    texts = sorted({t for ts in need.values() for t in ts})
    vectors = encode_texts(session, embedder, texts)  # cached when the ranking encoded them
    sentences = paper_sentences(session, embedder, (papers[a] for a in sorted(need)))
    chosen: dict[tuple[str, str], str] = {}
    for aid, ts in need.items():
        sv = sentences.get(aid)
        if sv is None:
            continue
        order = sorted(ts)
        for t, ev in zip(order, best_sentences(sv, order, vectors, lexicon, lexical_weight)):
            if ev.relevance >= floor:
                chosen[(aid, t)] = quote(ev.sentence)
    return chosen


def explain_picks(
    session: Session,
    embedder: Embedder,
    picks: Mapping[int, Sequence[Pick]],
    papers: Mapping[str, Paper],
    *,
    lexicon: Lexicon | None,
    lexical_weight: float,
    floor: float,
) -> dict[int, list[Pick]]:
    """``picks`` (subscriber id -> picks) with ``evidence`` set where an interest decided the pick and a
    sentence of the abstract matches it with a relevance of at least ``floor``."""
    need: dict[str, set[str]] = {}
    for ps in picks.values():
        for p in ps:
            text = deciding_interest(p.reason)
            if text is not None and p.arxiv_id in papers:
                need.setdefault(p.arxiv_id, set()).add(text)
    if not need:
        return {sid: list(ps) for sid, ps in picks.items()}
    chosen = _choose(session, embedder, need, papers, lexicon=lexicon, lexical_weight=lexical_weight, floor=floor)
    out: dict[int, list[Pick]] = {}
    for sid, ps in picks.items():
        row: list[Pick] = []
        for p in ps:
            text = deciding_interest(p.reason)
            ev = chosen.get((p.arxiv_id, text)) if text is not None else None
            row.append(Pick(p.arxiv_id, p.rank, p.score, p.reason, ev) if ev != p.evidence else p)
        out[sid] = row
    return out


def explain_columns(
    session: Session,
    embedder: Embedder,
    arxiv_ids: Sequence[str],
    reasons: Sequence[str],
    papers: Mapping[str, Paper],
    *,
    lexicon: Lexicon | None,
    lexical_weight: float,
    floor: float,
) -> list[str | None]:
    """``explain_picks`` for picks as columns (what planning writes): the evidence of each item, aligned
    with ``arxiv_ids`` and ``reasons``. A reason is read once however many items share it."""
    deciding: dict[str, str | None] = {}
    texts: list[str | None] = []
    need: dict[str, set[str]] = {}
    for aid, reason in zip(arxiv_ids, reasons):
        if reason not in deciding:
            deciding[reason] = deciding_interest(reason)
        text = deciding[reason]
        texts.append(text)
        if text is not None and aid in papers:
            need.setdefault(aid, set()).add(text)
    chosen = _choose(session, embedder, need, papers, lexicon=lexicon, lexical_weight=lexical_weight, floor=floor)
    if not chosen:
        return [None] * len(texts)
    return [chosen.get((aid, t)) if t is not None else None for aid, t in zip(arxiv_ids, texts)]


__all__ = ["EVIDENCE_CHARS", "Evidence", "best_sentences", "deciding_interest", "explain_columns", "explain_picks", "paper_sentences",
           "quote", "split_sentences"]
