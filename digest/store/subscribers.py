"""Repository functions for subscribers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.addresses import clean_name, normalise_email
from digest.models import Subscriber, SubscriberStatus, normalise_arxiv_id
from digest.store.tables import SubscriberRow


class SubscriberExistsError(ValueError):
    pass


class SubscriberNotFoundError(LookupError):
    pass


def _clean_list(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = " ".join(v.split())
        if v and v not in out:
            out.append(v)
    return out


def row_to_subscriber(row: SubscriberRow) -> Subscriber:
    return Subscriber(
        id=row.id, email=row.email, name=row.name, status=SubscriberStatus(row.status),
        interests=tuple(row.interests), negative_interests=tuple(row.negative_interests),
        include_keywords=tuple(row.include_keywords), exclude_keywords=tuple(row.exclude_keywords),
        seed_papers=tuple(row.seed_papers), max_papers=row.max_papers, frequency=row.frequency,
        timezone=row.timezone, created_at=row.created_at, confirmed_at=row.confirmed_at,
    )


def add_subscriber(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    interests: Sequence[str] = (),
    negative_interests: Sequence[str] = (),
    include_keywords: Sequence[str] = (),
    exclude_keywords: Sequence[str] = (),
    seed_papers: Sequence[str] = (),
    max_papers: int = 10,
    status: SubscriberStatus = SubscriberStatus.active,
) -> Subscriber:
    """Validate and store a subscriber. Raises ``InvalidAddressError`` or ``SubscriberExistsError``."""
    address = normalise_email(email)
    if max_papers < 1 or max_papers > 100:
        raise ValueError(f"max papers must be between 1 and 100, not {max_papers}")
    if session.scalar(select(SubscriberRow.id).where(SubscriberRow.email == address)) is not None:
        raise SubscriberExistsError(f"{address} is already subscribed")
    row = SubscriberRow(
        email=address, name=clean_name(name), status=status.value,
        interests=_clean_list(interests), negative_interests=_clean_list(negative_interests),
        include_keywords=_clean_list(include_keywords), exclude_keywords=_clean_list(exclude_keywords),
        seed_papers=_clean_list([normalise_arxiv_id(s) for s in seed_papers]), max_papers=max_papers,
    )
    session.add(row)
    session.flush()
    return row_to_subscriber(row)


def get_subscriber(session: Session, email: str) -> Subscriber:
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == normalise_email(email)))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {email}")
    return row_to_subscriber(row)


def list_subscribers(session: Session, status: SubscriberStatus | None = None) -> list[Subscriber]:
    q = select(SubscriberRow).order_by(SubscriberRow.id)
    if status is not None:
        q = q.where(SubscriberRow.status == status.value)
    return [row_to_subscriber(r) for r in session.scalars(q)]


def remove_subscriber(session: Session, email: str) -> None:
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == normalise_email(email)))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {email}")
    session.delete(row)
    session.flush()
