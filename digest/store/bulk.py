"""Statements over many rows, the same on SQLite and PostgreSQL: ``IN (...)`` lists cut into chunks (no
statement carries more than PostgreSQL's 65,535 parameters, nor SQLite's 32,766), and rows inserted with
one executemany, ``INSERT ... ON CONFLICT DO NOTHING`` where another writer may have been first."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row
from sqlalchemy.orm import Session

T = TypeVar("T")

# Values in one ``IN (...)``: far below both limits, and few statements at 100k subscribers.
IN_CHUNK = 10_000


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size`` (none for an empty sequence)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def insert_ignoring_conflicts(session: Session, entity: Any, rows: Sequence[Mapping[str, object]],
                              returning: Sequence[Any] = ()) -> list[Row[Any]]:
    """Insert ``rows`` (dicts of column values) into ``entity``'s table in one executemany (SQLAlchemy
    pages it into multi-row VALUES statements under the parameter limits); a row that would break a
    unique constraint is skipped, as another writer's row stands. With ``returning`` (columns), the rows
    this call inserted come back with those values; skipped rows do not."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - another backend: one savepoint per row, correct but slow
        return _one_by_one(session, entity, rows, returning)
    stmt = insert(entity).on_conflict_do_nothing()
    if returning:
        return list(session.execute(stmt.returning(*returning), list(rows)).all())
    session.execute(stmt, list(rows))
    return []


def _one_by_one(session: Session, entity: Any, rows: Sequence[Mapping[str, object]],
                returning: Sequence[Any]) -> list[Row[Any]]:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    out: list[Row[Any]] = []
    for row in rows:
        stmt = insert(entity).values(**row)
        try:
            with session.begin_nested():
                if returning:
                    out.append(session.execute(stmt.returning(*returning)).one())
                else:
                    session.execute(stmt)
        except IntegrityError:
            continue
    return out
