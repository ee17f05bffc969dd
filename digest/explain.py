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
in the store (``sentence_embeddings``) and redone only when its title or abstract changes. That is the
embed step's work (``embed_sentences``, called by ``pipeline.embed`` with the papers' own vectors): the
day's planning then only reads the cache. A picked paper found without cached sentences at plan time (one
stored by an older version, or never through the embed step) is still split and encoded then, counted and
logged as the exception it is. Choosing is then one small matrix product per paper for all the interests
that picked it. The interest vectors come from the interest cache the ranking filled.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest.bm25 import Lexicon, bm25n
from digest.embed import Embedder, session_scope, encode_texts
from digest.models import Paper, Pick
from digest.text import trim
from digest.store.sentences import (
    PaperText,
    SentenceVectors,
    papers_needing_sentences,
    save_sentence_vectors,
    sentence_vectors,
)

log = logging.getLogger(__name__)

MAX_SENTENCES = 64  # sentences kept per abstract (real abstracts have 5-15)
MIN_WORDS = 4  # shorter pieces ("2)", "Code:") are never quoted
EVIDENCE_CHARS = 300  # a longer sentence is quoted cut at a word boundary, with an ellipsis
# Only this much of an abstract is split: what the source stores at most (huggingface.MAX_ABSTRACT_CHARS).
# A paper stored before that bound keeps its whole text in the store, but pysbd's time grows with the text.
SPLIT_CHARS = 10_000
# Papers whose sentences the embed step encodes, and caches with one bulk insert, together (one commit each
# with an engine): ~10 sentences a paper.
SENTENCE_PAPERS_BATCH = 256
_WORD = re.compile(r"\w+")
_INTEREST = "interest:"
_CLOSEST = "closest:"

_segmenter_lock = threading.Lock()
_segmenter = None


def split_sentences(abstract: str) -> tuple[str, ...]:
    """The sentences of ``abstract`` that could be quoted: pysbd's boundaries, whitespace collapsed, pieces
    of fewer than ``MIN_WORDS`` words left out, at most ``MAX_SENTENCES``, from its first ``SPLIT_CHARS``
    characters."""
    import pysbd

    global _segmenter
    cut = len(abstract) > SPLIT_CHARS
    text = " ".join(abstract[:SPLIT_CHARS].split())
    if not text:
        return ()
    with _segmenter_lock:  # one Segmenter, not known to be thread-safe
        if _segmenter is None:
            _segmenter = pysbd.Segmenter(language="en", clean=False)
        pieces = list(_segmenter.segment(text))
    if cut and len(pieces) > 1:
        pieces.pop()  # the sentence the cut ran through
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


def _split_and_encode(embedder: Embedder, papers: Sequence[PaperText]) -> dict[str, SentenceVectors]:
    """Each paper's sentences (``split_sentences``) and their vectors, in one ``encode`` call for all (the
    model is loaded only when there is a sentence to encode). A paper without a quotable sentence gets an
    empty entry: it is cached too, so it is split once."""
    todo = [(p, split_sentences(p.abstract)) for p in papers]
    flat = [s for _, sentences in todo for s in sentences]
    vecs = embedder.encode(flat) if flat else None
    dim = int(vecs.shape[1]) if vecs is not None else 0
    out: dict[str, SentenceVectors] = {}
    i = 0
    for p, sentences in todo:
        block = vecs[i : i + len(sentences)] if vecs is not None else np.zeros((0, dim), np.float32)
        i += len(sentences)
        out[p.arxiv_id] = SentenceVectors(p.content_hash, sentences, block)
    return out


def embed_sentences(
    engine_or_session: Engine | Session,
    embedder: Embedder,
    arxiv_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> int:
    """The embed step's part of the explanations: split the abstracts of the stored papers (by id and/or
    listing dates ``[start, end]``; all when none given) that have no cached sentences for this embedder's
    model and precision, or whose title/abstract changed since, and encode their sentences, in batches of
    ``SENTENCE_PAPERS_BATCH`` papers, each one ``encode`` call and one bulk insert (a row another process
    wrote first stands). Returns how many sentences were encoded; the model is loaded only when one is.

    With an engine, every batch is committed on its own; with a session, the caller commits."""
    with session_scope(engine_or_session) as session:
        todo = papers_needing_sentences(session, embedder.name, embedder.precision, arxiv_ids, start, end)
    total = 0
    for i in range(0, len(todo), SENTENCE_PAPERS_BATCH):
        found = _split_and_encode(embedder, todo[i : i + SENTENCE_PAPERS_BATCH])
        with session_scope(engine_or_session) as session:
            save_sentence_vectors(session, embedder.name, embedder.precision, found)
        total += sum(len(sv.sentences) for sv in found.values())
        log.info("embedded the sentences of %d/%d papers (%d sentences) with %s",
                 min(i + SENTENCE_PAPERS_BATCH, len(todo)), len(todo), total, embedder.name)
    return total


class Sentences(NamedTuple):
    """The sentences of papers (papers without a quotable sentence absent), and how many of them had to be
    encoded now because the cache did not hold them (0 after the embed step)."""

    by_paper: dict[str, SentenceVectors]
    encoded: int


def paper_sentences(session: Session, embedder: Embedder, papers: Iterable[Paper]) -> Sentences:
    """The sentences and vectors of ``papers`` from the cache, where it holds them for the paper's current
    text. The embed step (``embed_sentences``) put them there; a paper it did not reach (stored by an
    older version, or ranked by ``digest rank`` before any embed step) is split and encoded now (one
    ``encode`` call for all of them), cached and counted (``Sentences.encoded``; ``pipeline.plan`` warns):
    correct, but embedding work inside planning."""
    wanted = {p.arxiv_id: p for p in papers}
    cached = sentence_vectors(session, embedder.name, embedder.precision, wanted)
    out = {a: sv for a, sv in cached.items() if sv.content_hash == wanted[a].content_hash}
    todo = [PaperText(a, p.content_hash, p.abstract) for a, p in wanted.items() if a not in out]
    encoded = 0
    if todo:
        new = _split_and_encode(embedder, todo)
        save_sentence_vectors(session, embedder.name, embedder.precision, new)
        encoded = sum(len(sv.sentences) for sv in new.values())
        log.info("the sentences of %d papers were not cached by the embed step: %d sentences encoded while "
                 "explaining (%s)", len(todo), encoded, ", ".join(p.arxiv_id for p in todo[:5])
                 + (", ..." if len(todo) > 5 else ""))
        out.update(new)
    return Sentences({a: sv for a, sv in out.items() if sv.sentences}, encoded)


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
            lexicon: Lexicon | None, lexical_weight: float, floor: float) -> tuple[dict[tuple[str, str], str], int]:
    """(arXiv id, interest text) -> the sentence quoted beside it, for each pair of ``need`` whose best
    sentence has a relevance of at least ``floor``; and how many sentences had to be encoded for it."""
    if not need:
        return {}, 0
    texts = sorted({t for ts in need.values() for t in ts})
    vectors = encode_texts(session, embedder, texts)  # cached when the ranking encoded them
    sentences, encoded = paper_sentences(session, embedder, (papers[a] for a in sorted(need)))
    chosen: dict[tuple[str, str], str] = {}
    for aid, ts in need.items():
        sv = sentences.get(aid)
        if sv is None:
            continue
        order = sorted(ts)
        for t, ev in zip(order, best_sentences(sv, order, vectors, lexicon, lexical_weight)):
            if ev.relevance >= floor:
                chosen[(aid, t)] = quote(ev.sentence)
    return chosen, encoded


def explain_picks(
    session: Session,
    embedder: Embedder,
    picks: Mapping[int, Sequence[Pick]],
    papers: Mapping[str, Paper],
    *,
    lexicon: Lexicon | None,
    lexical_weight: float,
    floor: float,
) -> tuple[dict[int, list[Pick]], int]:
    """``picks`` (subscriber id -> picks) with ``evidence`` set where an interest decided the pick and a
    sentence of the abstract matches it with a relevance of at least ``floor``; and how many sentences had
    to be encoded for it (``paper_sentences``: 0 after the embed step)."""
    need: dict[str, set[str]] = {}
    for ps in picks.values():
        for p in ps:
            text = deciding_interest(p.reason)
            if text is not None and p.arxiv_id in papers:
                need.setdefault(p.arxiv_id, set()).add(text)
    if not need:
        return {sid: list(ps) for sid, ps in picks.items()}, 0
    chosen, encoded = _choose(session, embedder, need, papers, lexicon=lexicon, lexical_weight=lexical_weight,
                              floor=floor)
    out: dict[int, list[Pick]] = {}
    for sid, ps in picks.items():
        row: list[Pick] = []
        for p in ps:
            text = deciding_interest(p.reason)
            ev = chosen.get((p.arxiv_id, text)) if text is not None else None
            row.append(Pick(p.arxiv_id, p.rank, p.score, p.reason, ev) if ev != p.evidence else p)
        out[sid] = row
    return out, encoded


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
) -> tuple[list[str | None], int]:
    """``explain_picks`` for picks as columns (what planning writes): the evidence of each item, aligned
    with ``arxiv_ids`` and ``reasons``, and how many sentences had to be encoded for it. A reason is read
    once however many items share it."""
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
    chosen, encoded = _choose(session, embedder, need, papers, lexicon=lexicon, lexical_weight=lexical_weight,
                              floor=floor)
    if not chosen:
        return [None] * len(texts), encoded
    return [chosen.get((aid, t)) if t is not None else None for aid, t in zip(arxiv_ids, texts)], encoded


__all__ = ["EVIDENCE_CHARS", "Evidence", "Sentences", "best_sentences", "deciding_interest", "embed_sentences",
           "explain_columns", "explain_picks", "paper_sentences", "quote", "split_sentences"]
