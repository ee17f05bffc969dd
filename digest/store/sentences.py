"""Repository functions for the sentence cache: a paper's abstract split into sentences and their vectors,
keyed like the other embedding caches by model name and precision, and valid while the paper's content hash
(title and abstract) is the one they were computed from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.bulk import insert_ignoring_conflicts
from digest.store.embeddings import stale_papers
from digest.store.tables import PaperRow, SentenceEmbeddingRow, utcnow

_CHUNK = 500


@dataclass(frozen=True)
class SentenceVectors:
    """One paper's sentences and their (len(sentences), dim) unit float32 vectors."""

    content_hash: str
    sentences: tuple[str, ...]
    vectors: np.ndarray


def _matrix(data: bytes, n: int, dim: int) -> np.ndarray:
    v = np.frombuffer(data, dtype="<f4")
    if v.shape[0] != n * dim:
        raise ValueError(f"stored sentence vectors have {v.shape[0]} values, expected {n} x {dim}")
    return v.astype(np.float32, copy=False).reshape(n, dim)


def sentence_vectors(session: Session, model: str, precision: str, arxiv_ids: Iterable[str]) -> dict[str, SentenceVectors]:
    """The cached sentences of ``arxiv_ids`` for ``model`` at ``precision`` (papers without any are absent;
    the caller compares ``content_hash`` with the paper's)."""
    ids = list(dict.fromkeys(arxiv_ids))
    out: dict[str, SentenceVectors] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(SentenceEmbeddingRow.arxiv_id, SentenceEmbeddingRow.content_hash, SentenceEmbeddingRow.sentences,
                   SentenceEmbeddingRow.dim, SentenceEmbeddingRow.vectors).where(
                SentenceEmbeddingRow.model == model, SentenceEmbeddingRow.precision == precision,
                SentenceEmbeddingRow.arxiv_id.in_(ids[i : i + _CHUNK]))
        )
        for aid, content_hash, sentences, dim, data in rows:
            out[aid] = SentenceVectors(content_hash, tuple(sentences), _matrix(data, len(sentences), dim))
    return out


@dataclass(frozen=True, slots=True)
class PaperText:
    """What splitting a paper's abstract needs: its id, the content hash its sentences are valid for, and
    the abstract."""

    arxiv_id: str
    content_hash: str
    abstract: str


def papers_needing_sentences(session: Session, model: str, precision: str, arxiv_ids: Iterable[str] | None = None,
                             start: date | None = None, end: date | None = None) -> list[PaperText]:
    """Papers (of ``arxiv_ids`` and/or the listing dates ``[start, end]``; all when none given) whose
    sentences have no cached row for ``model`` at ``precision``, or one computed from another title or
    abstract (content hash differs). By arXiv id."""
    what = select(PaperRow.arxiv_id, PaperRow.content_hash, PaperRow.abstract)
    rows = stale_papers(session, what, SentenceEmbeddingRow, model, precision, arxiv_ids, start, end)
    return [PaperText(*r) for r in rows]


def save_sentence_vectors(session: Session, model: str, precision: str, found: Mapping[str, SentenceVectors]) -> None:
    """Insert or replace the cached sentences of the papers in ``found`` (by arXiv id). A paper without a
    quotable sentence is cached too (split once), with the width of its empty matrix."""
    ids: Sequence[str] = list(found)
    existing = {
        r.arxiv_id: r
        for i in range(0, len(ids), _CHUNK)
        for r in session.scalars(select(SentenceEmbeddingRow).where(
            SentenceEmbeddingRow.model == model, SentenceEmbeddingRow.precision == precision,
            SentenceEmbeddingRow.arxiv_id.in_(ids[i : i + _CHUNK])))
    }
    now = utcnow()
    new: list[dict[str, object]] = []
    for aid, sv in found.items():
        data = np.ascontiguousarray(sv.vectors, dtype="<f4").tobytes()
        dim = int(sv.vectors.shape[1]) if sv.vectors.ndim == 2 else 0
        row = existing.get(aid)
        if row is None:
            new.append({"arxiv_id": aid, "model": model, "precision": precision, "content_hash": sv.content_hash,
                        "sentences": list(sv.sentences), "dim": dim, "vectors": data, "created_at": now})
        else:
            row.content_hash, row.sentences, row.dim, row.vectors, row.created_at = (
                sv.content_hash, list(sv.sentences), dim, data, now)
    # Two planners (two `digest run` of one date, two machines) may split the same new paper at once: the
    # row the other wrote first stands (same text, same sentences).
    insert_ignoring_conflicts(session, SentenceEmbeddingRow, new)
    session.flush()
