"""Repository functions for cached vectors: paper embeddings (by content hash) and interest-text vectors.

Every vector is keyed by the model name *and* the precision it ran at (``FP32``, ``BF16``): a bf16 vector
is never read for an fp32 ranking nor the reverse (migration 0006)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import Row, Select, and_, or_, select
from sqlalchemy.orm import Session

from digest.store.bulk import IN_CHUNK, chunks, insert_ignoring_conflicts
from digest.store.tables import InterestEmbeddingRow, PaperEmbeddingRow, PaperRow, utcnow

_CHUNK = 500
FP32 = "fp32"
BF16 = "bf16"


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(data, dtype="<f4")
    if v.shape[0] != dim:
        raise ValueError(f"stored vector has {v.shape[0]} values, expected {dim}")
    return v.astype(np.float32, copy=False)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stale_papers(
    session: Session,
    what: Select[Any],
    cache: Any,
    model: str,
    precision: str,
    arxiv_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[Row[Any]]:
    """The rows of ``what`` (a select over ``PaperRow``) for the papers (of ``arxiv_ids`` and/or the listing
    dates ``[start, end]``; all when none given) with no row of the per-paper cache table ``cache`` (keyed
    by arxiv_id, model, precision; valid for a content_hash) for ``model`` at ``precision``, or one computed
    from another title/abstract (content hash differs). By arXiv id; ``IN`` lists in chunks."""
    q = (
        what.outerjoin(cache, and_(cache.arxiv_id == PaperRow.arxiv_id, cache.model == model,
                                   cache.precision == precision))
        .where(or_(cache.arxiv_id.is_(None), cache.content_hash != PaperRow.content_hash))
        .order_by(PaperRow.arxiv_id)
    )
    if start is not None:
        q = q.where(PaperRow.listing_date >= start)
    if end is not None:
        q = q.where(PaperRow.listing_date <= end)
    if arxiv_ids is None:
        return list(session.execute(q))
    ids = list(dict.fromkeys(arxiv_ids))
    return [r for i in range(0, len(ids), _CHUNK)
            for r in session.execute(q.where(PaperRow.arxiv_id.in_(ids[i : i + _CHUNK])))]


def papers_needing_embedding(
    session: Session,
    model: str,
    arxiv_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    precision: str = FP32,
) -> list[PaperRow]:
    """Papers (of ``arxiv_ids`` and/or the listing dates ``[start, end]``) with no vector for ``model`` at
    ``precision``, or whose vector was computed from another title/abstract (content hash differs)."""
    rows = stale_papers(session, select(PaperRow), PaperEmbeddingRow, model, precision, arxiv_ids, start, end)
    return [r[0] for r in rows]


def save_paper_vectors(
    session: Session, model: str, rows: Sequence[PaperRow], vectors: np.ndarray, precision: str = FP32
) -> None:
    """Insert or replace the vectors of ``rows`` (same order) for ``model`` at ``precision``."""
    existing = {
        r.arxiv_id: r
        for i in range(0, len(rows), _CHUNK)
        for r in session.scalars(
            select(PaperEmbeddingRow).where(
                PaperEmbeddingRow.model == model, PaperEmbeddingRow.precision == precision,
                PaperEmbeddingRow.arxiv_id.in_([p.arxiv_id for p in rows[i : i + _CHUNK]]),
            )
        )
    }
    now = utcnow()
    for paper, vec in zip(rows, vectors, strict=True):
        row = existing.get(paper.arxiv_id)
        if row is None:
            session.add(
                PaperEmbeddingRow(
                    arxiv_id=paper.arxiv_id, model=model, precision=precision, content_hash=paper.content_hash,
                    dim=int(vec.shape[0]), vector=to_bytes(vec), created_at=now,
                )
            )
        else:
            row.content_hash = paper.content_hash
            row.dim = int(vec.shape[0])
            row.vector = to_bytes(vec)
            row.created_at = now
    session.flush()


def paper_vectors(
    session: Session, model: str, arxiv_ids: Iterable[str], precision: str = FP32
) -> dict[str, np.ndarray]:
    """Stored vectors of ``arxiv_ids`` for ``model`` at ``precision`` (papers without one are absent)."""
    ids = list(dict.fromkeys(arxiv_ids))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(PaperEmbeddingRow.arxiv_id, PaperEmbeddingRow.vector, PaperEmbeddingRow.dim).where(
                PaperEmbeddingRow.model == model, PaperEmbeddingRow.precision == precision,
                PaperEmbeddingRow.arxiv_id.in_(ids[i : i + _CHUNK]),
            )
        )
        for aid, data, dim in rows:
            out[aid] = from_bytes(data, dim)
    return out


def interest_vectors(
    session: Session, model: str, texts: Iterable[str], precision: str = FP32
) -> dict[str, np.ndarray]:
    """Cached vectors of interest ``texts`` for ``model`` at ``precision`` (texts not cached are absent)."""
    by_hash = {text_hash(t): t for t in dict.fromkeys(texts)}
    hashes = list(by_hash)
    out: dict[str, np.ndarray] = {}
    for part in chunks(hashes, IN_CHUNK):
        rows = session.execute(
            select(InterestEmbeddingRow.text_hash, InterestEmbeddingRow.vector, InterestEmbeddingRow.dim).where(
                InterestEmbeddingRow.model == model, InterestEmbeddingRow.precision == precision,
                InterestEmbeddingRow.text_hash.in_(part),
            )
        )
        for h, data, dim in rows:
            out[by_hash[h]] = from_bytes(data, dim)
    return out


def missing_interest_texts(session: Session, model: str, texts: Iterable[str], precision: str = FP32) -> list[str]:
    """The distinct ``texts`` (in order of first appearance) with no cached vector for ``model`` at
    ``precision``: one query per ``IN_CHUNK`` texts, no vector read."""
    by_hash = {text_hash(t): t for t in dict.fromkeys(t for t in texts if t)}
    hashes = list(by_hash)
    found: set[str] = set()
    for part in chunks(hashes, IN_CHUNK):
        found.update(session.scalars(
            select(InterestEmbeddingRow.text_hash).where(
                InterestEmbeddingRow.model == model, InterestEmbeddingRow.precision == precision,
                InterestEmbeddingRow.text_hash.in_(part),
            )
        ))
    return [t for h, t in by_hash.items() if h not in found]


def save_interest_vectors(
    session: Session, model: str, vectors: Mapping[str, np.ndarray], precision: str = FP32
) -> None:
    """Cache the vectors of interest texts in one bulk insert; a text cached meanwhile (by another writer)
    keeps its row (the same text gives the same vector)."""
    now = utcnow()
    rows = [
        {"text_hash": text_hash(t), "model": model, "precision": precision, "text": t, "dim": int(vec.shape[0]),
         "vector": to_bytes(vec), "created_at": now}
        for t, vec in vectors.items()
    ]
    insert_ignoring_conflicts(session, InterestEmbeddingRow, rows)
