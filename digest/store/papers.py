"""Repository functions for papers: upsert by versionless arXiv id, with upvote history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.models import Paper, UpsertReport
from digest.store.tables import PaperRow, UpvoteRow, utcnow

# Fields a re-fetch may change; everything else is fixed once stored.
_MUTABLE = (
    "title", "abstract", "authors", "published_at", "num_comments", "ai_summary", "ai_keywords",
    "github_url", "project_url", "thumbnail_url", "organization", "organization_name", "github_stars", "media_urls",
)


def _row_values(p: Paper) -> dict[str, object]:
    return {
        "title": p.title,
        "abstract": p.abstract,
        "authors": list(p.authors),
        "published_at": p.published_at,
        "num_comments": p.num_comments,
        "ai_summary": p.ai_summary,
        "ai_keywords": list(p.ai_keywords),
        "github_url": p.github_url,
        "project_url": p.project_url,
        "thumbnail_url": p.thumbnail_url,
        "organization": p.organization,
        "organization_name": p.organization_name,
        "github_stars": p.github_stars,
        "media_urls": list(p.media_urls),
    }


def _same(a: object, b: object) -> bool:
    # SQLite drops tzinfo on read: compare datetimes by their naive UTC value.
    if hasattr(a, "replace") and hasattr(b, "replace") and hasattr(a, "tzinfo") and hasattr(b, "tzinfo"):
        a = a.replace(tzinfo=None)  # type: ignore[union-attr]
        b = b.replace(tzinfo=None)  # type: ignore[union-attr]
    return a == b


def _insert_new(session: Session, rows: list[dict[str, object]]) -> set[str]:
    """Insert paper rows, skipping any arXiv id another writer inserted a moment ago (two commands storing
    the same listing at once); returns the ids this call inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - another backend: plain inserts (a concurrent insert raises)
        session.add_all(PaperRow(**r) for r in rows)
        session.flush()
        return {str(r["arxiv_id"]) for r in rows}
    stmt = insert(PaperRow).on_conflict_do_nothing(index_elements=["arxiv_id"]).returning(PaperRow.arxiv_id)
    return set(session.scalars(stmt, rows))


def upsert_papers(session: Session, papers: Iterable[Paper]) -> UpsertReport:
    """Insert new papers, update changed ones, record upvote changes. One paper per arXiv id, ever.

    The listing date of a stored paper is the first day it was listed: a paper that trends again on a
    later day stays one row (and is never mailed twice). Safe alongside another writer storing the same
    papers: a paper it inserted first is updated here like any stored one."""
    incoming = {p.arxiv_id: p for p in papers}
    if not incoming:
        return UpsertReport()
    existing = {
        row.arxiv_id: row
        for row in session.scalars(select(PaperRow).where(PaperRow.arxiv_id.in_(list(incoming))))
    }
    now = utcnow()
    fresh = [
        {"arxiv_id": a, "listing_date": p.listing_date, "upvotes": p.upvotes, "content_hash": p.content_hash,
         "first_seen": now, "updated_at": now, **_row_values(p)}
        for a, p in incoming.items() if a not in existing
    ]
    inserted = _insert_new(session, fresh) if fresh else set()
    raced = [r["arxiv_id"] for r in fresh if r["arxiv_id"] not in inserted]
    if raced:
        existing.update(
            (row.arxiv_id, row) for row in session.scalars(select(PaperRow).where(PaperRow.arxiv_id.in_(raced)))
        )
    new: list[str] = []
    updated = unchanged = 0
    for arxiv_id, p in incoming.items():
        if arxiv_id in inserted:
            session.add(UpvoteRow(arxiv_id=arxiv_id, observed_at=now, upvotes=p.upvotes))
            new.append(arxiv_id)
            continue
        row = existing[arxiv_id]
        changed = False
        for key, value in _row_values(p).items():
            if key in _MUTABLE and not _same(getattr(row, key), value):
                setattr(row, key, value)
                changed = True
        if row.content_hash != p.content_hash:
            row.content_hash = p.content_hash
            changed = True
        if row.upvotes != p.upvotes:
            row.upvotes = p.upvotes
            session.add(UpvoteRow(arxiv_id=arxiv_id, observed_at=now, upvotes=p.upvotes))
            changed = True
        if changed:
            row.updated_at = now
            updated += 1
        else:
            unchanged += 1
    session.flush()
    return UpsertReport(new=len(new), updated=updated, unchanged=unchanged, new_ids=tuple(new))


def row_to_paper(row: PaperRow) -> Paper:
    return Paper(
        arxiv_id=row.arxiv_id, title=row.title, abstract=row.abstract, authors=tuple(row.authors),
        listing_date=row.listing_date, published_at=row.published_at, upvotes=row.upvotes,
        num_comments=row.num_comments, ai_summary=row.ai_summary, ai_keywords=tuple(row.ai_keywords),
        github_url=row.github_url, project_url=row.project_url, thumbnail_url=row.thumbnail_url,
        organization=row.organization, organization_name=row.organization_name, github_stars=row.github_stars,
        media_urls=tuple(row.media_urls or ()),
    )


def papers_by_ids(session: Session, arxiv_ids: Iterable[str]) -> dict[str, Paper]:
    """The stored papers among ``arxiv_ids``, by id (unknown ids are absent)."""
    ids = list(dict.fromkeys(arxiv_ids))
    rows = session.scalars(select(PaperRow).where(PaperRow.arxiv_id.in_(ids))) if ids else []
    return {r.arxiv_id: row_to_paper(r) for r in rows}


def papers_between(session: Session, start: date, end: date) -> list[Paper]:
    """Papers first listed in ``[start, end]``, most upvoted first."""
    rows = session.scalars(
        select(PaperRow)
        .where(PaperRow.listing_date >= start, PaperRow.listing_date <= end)
        .order_by(PaperRow.listing_date.desc(), PaperRow.upvotes.desc(), PaperRow.arxiv_id)
    )
    return [row_to_paper(r) for r in rows]


def list_papers(session: Session, day: date | None = None) -> list[Paper]:
    if day is not None:
        return papers_between(session, day, day)
    rows = session.scalars(
        select(PaperRow).order_by(PaperRow.listing_date.desc(), PaperRow.upvotes.desc(), PaperRow.arxiv_id)
    )
    return [row_to_paper(r) for r in rows]


def listed_between(session: Session, start: date, end: date) -> list[tuple[str, date, datetime]]:
    """``(arxiv_id, listing_date, first_seen)`` of every paper listed from ``start`` to ``end``: when each
    was first stored tells which came after a digest was ranked (HF keeps adding papers to a day's list)."""
    rows = session.execute(
        select(PaperRow.arxiv_id, PaperRow.listing_date, PaperRow.first_seen)
        .where(PaperRow.listing_date >= start, PaperRow.listing_date <= end)
    )
    return [(a, d, seen if seen.tzinfo else seen.replace(tzinfo=timezone.utc)) for a, d, seen in rows]


def latest_listing_date(session: Session, before: date) -> date | None:
    """The last listing date before ``before`` that has stored papers (``None``: none)."""
    return session.scalar(select(func.max(PaperRow.listing_date)).where(PaperRow.listing_date < before))


def count_papers(session: Session, day: date | None = None) -> int:
    q = select(func.count()).select_from(PaperRow)
    if day is not None:
        q = q.where(PaperRow.listing_date == day)
    return int(session.scalar(q) or 0)


def upvote_history(session: Session, arxiv_id: str) -> Sequence[int]:
    return list(
        session.scalars(select(UpvoteRow.upvotes).where(UpvoteRow.arxiv_id == arxiv_id).order_by(UpvoteRow.id))
    )
