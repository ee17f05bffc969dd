"""Repository functions for the BM25 reference statistics (``lexicon_stats``) and the paper texts they
are computed from. The statistics themselves are computed by ``digest.lexicon``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from digest.store.tables import LexiconRow, PaperRow, utcnow


@dataclass(frozen=True, slots=True)
class LexiconStats:
    n_docs: int
    total_len: int
    doc_freq: dict[str, int]
    through: datetime | None  # the newest ``first_seen`` counted


def load_stats(session: Session, name: str) -> LexiconStats | None:
    row = session.get(LexiconRow, name)
    if row is None:
        return None
    return LexiconStats(row.n_docs, row.total_len, dict(row.doc_freq), row.through)


def save_stats(session: Session, name: str, stats: LexiconStats) -> bool:
    """Insert or replace the statistics; ``False`` when another process wrote them at the same moment
    (theirs are kept: both counted the same papers)."""
    try:
        with session.begin_nested():
            row = session.get(LexiconRow, name)
            if row is None:
                row = LexiconRow(name=name)
                session.add(row)
            row.n_docs, row.total_len, row.doc_freq = stats.n_docs, stats.total_len, stats.doc_freq
            row.through, row.updated_at = stats.through, utcnow()
        return True
    except exc.IntegrityError:
        return False


def paper_documents(
    session: Session, after: datetime | None = None, batch: int = 2000
) -> Iterator[tuple[str, str, list[str], datetime]]:
    """(title, abstract, ai_keywords, first_seen) of every stored paper first seen after ``after`` (all
    when ``None``), streamed in batches."""
    q = select(PaperRow.title, PaperRow.abstract, PaperRow.ai_keywords, PaperRow.first_seen)
    if after is not None:
        q = q.where(PaperRow.first_seen > after)
    for row in session.execute(q.execution_options(yield_per=batch)):
        yield row.title, row.abstract, list(row.ai_keywords or ()), row.first_seen
