"""Repository functions for subscribers: the only doors through which the CLI and the web pages read and
change a subscriber. Every value is validated by the domain rules in ``digest.models`` on the way in."""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from digest.models import (
    DEFAULT_MAX_PAPERS,
    DEFAULT_WEEKDAY,
    Subscriber,
    SubscriberStatus,
    check_frequency,
    check_max_papers,
    clean_list,
    clean_name,
    email_key,
    normalise_arxiv_id,
    normalise_email,
    parse_weekday,
)
from digest.store.bulk import IN_CHUNK, chunks, insert_ignoring_conflicts
from digest.store.tables import SubscriberRow, new_link_key, utcnow


class SubscriberExistsError(ValueError):
    pass


class SubscriberNotFoundError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a subscriber sets on the preferences page (and the CLI): each list is cleaned by
    ``clean_list``, ``max_papers`` checked by ``check_max_papers``."""

    interests: Sequence[str] = ()
    negative_interests: Sequence[str] = ()
    include_keywords: Sequence[str] = ()
    exclude_keywords: Sequence[str] = ()
    max_papers: int = DEFAULT_MAX_PAPERS
    frequency: str = "daily"
    seed_papers: Sequence[str] | None = None  # arXiv ids (resolved by digest.seeds); None = unchanged
    weekday: int | str | None = None  # weekly: mon..sun or 0..6 (None: Friday); daily: must be None
    thumbnails: bool = False  # each paper's thumbnail in the HTML part
    plain_text: bool = False  # the text part alone, no HTML
    follow_orgs: Sequence[str] = ()  # labs (HF handle or display name)
    follow_authors: Sequence[str] = ()  # authors (full name)
    only_with_code: bool = False  # only papers with a GitHub repository


def row_to_subscriber(row: SubscriberRow) -> Subscriber:
    return Subscriber(
        id=row.id, email=row.email, name=row.name, status=SubscriberStatus(row.status),
        interests=tuple(row.interests), negative_interests=tuple(row.negative_interests),
        include_keywords=tuple(row.include_keywords), exclude_keywords=tuple(row.exclude_keywords),
        seed_papers=tuple(row.seed_papers), max_papers=row.max_papers, frequency=row.frequency,
        timezone=row.timezone, created_at=row.created_at, confirmed_at=row.confirmed_at,
        link_key=row.link_key, status_changed_at=row.status_changed_at,
        pending_interests=tuple(row.pending_interests) if row.pending_interests is not None else None,
        pending_max_papers=row.pending_max_papers, feed_key=row.feed_key, weekday=row.weekday,
        thumbnails=bool(row.thumbnails), plain_text=bool(row.plain_text),
        follow_orgs=tuple(row.follow_orgs or ()), follow_authors=tuple(row.follow_authors or ()),
        only_with_code=bool(row.only_with_code),
    )


def _set_status(row: SubscriberRow, status: SubscriberStatus) -> None:
    """Every change of status goes through here: it records when (a link issued before is stale)."""
    if row.status != status.value:
        row.status = status.value
        row.status_changed_at = utcnow()


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, not {value!r}")
    return value


def clean_follows(values: Sequence[str], what: str) -> list[str]:
    """Labs or authors followed: cleaned like every list, and one entry per name in any case and spacing (they
    are matched so: ``digest.rank.follow_key``)."""
    seen: set[str] = set()
    out: list[str] = []
    for v in clean_list(values, what):
        key = " ".join(v.split()).casefold()
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _apply(row: SubscriberRow, prefs: Preferences) -> None:
    """Validate every value first, then write them: a bad value raises ``ValueError`` with the row as it was."""
    frequency = check_frequency(prefs.frequency)
    if frequency == "weekly":
        weekday: int | None = DEFAULT_WEEKDAY if prefs.weekday is None else parse_weekday(prefs.weekday)
    elif prefs.weekday is not None:
        raise ValueError("a weekday is for weekly digests: give the frequency weekly too")
    else:
        weekday = None
    values = {
        "interests": clean_list(prefs.interests, "interests"),
        "negative_interests": clean_list(prefs.negative_interests, "negative interests"),
        "include_keywords": clean_list(prefs.include_keywords, "include keywords"),
        "exclude_keywords": clean_list(prefs.exclude_keywords, "exclude keywords"),
        "max_papers": check_max_papers(prefs.max_papers),
        "frequency": frequency,
        "weekday": weekday,
        "thumbnails": _flag(prefs.thumbnails, "thumbnails"),
        "plain_text": _flag(prefs.plain_text, "plain text"),
        "follow_orgs": clean_follows(prefs.follow_orgs, "followed labs"),
        "follow_authors": clean_follows(prefs.follow_authors, "followed authors"),
        "only_with_code": _flag(prefs.only_with_code, "only with code"),
    }
    if prefs.seed_papers is not None:
        values["seed_papers"] = clean_list([normalise_arxiv_id(a) for a in prefs.seed_papers], "seed papers")
    for key, value in values.items():
        setattr(row, key, value)


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
    max_papers: int = DEFAULT_MAX_PAPERS,
    status: SubscriberStatus = SubscriberStatus.active,
    frequency: str = "daily",
    weekday: int | str | None = None,
    thumbnails: bool = False,
    plain_text: bool = False,
    follow_orgs: Sequence[str] = (),
    follow_authors: Sequence[str] = (),
    only_with_code: bool = False,
) -> Subscriber:
    """Validate and store a subscriber. Raises ``InvalidAddressError``, ``ValueError`` (a list or number
    out of bounds) or ``SubscriberExistsError``."""
    address = normalise_email(email)
    if session.scalar(select(SubscriberRow.id).where(SubscriberRow.email == address)) is not None:
        raise SubscriberExistsError(f"{address} is already subscribed")
    now = utcnow()
    row = SubscriberRow(email=address, name=clean_name(name), status=status.value, link_key=new_link_key(),
                        created_at=now, status_changed_at=now)
    _apply(row, Preferences(interests, negative_interests, include_keywords, exclude_keywords, max_papers,
                            frequency, weekday=weekday, thumbnails=thumbnails, plain_text=plain_text,
                            follow_orgs=follow_orgs, follow_authors=follow_authors,
                            only_with_code=only_with_code))
    row.seed_papers = clean_list([normalise_arxiv_id(s) for s in seed_papers], "seed papers")
    session.add(row)
    session.flush()
    return row_to_subscriber(row)


def _row(session: Session, subscriber_id: int) -> SubscriberRow | None:
    return session.get(SubscriberRow, subscriber_id)


def find_subscriber(session: Session, subscriber_id: int | None = None, *, email: str | None = None) -> Subscriber | None:
    """The subscriber with this id or address, or ``None``."""
    if subscriber_id is not None:
        row = _row(session, subscriber_id)
    elif email is not None:
        row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email_key(email)))
    else:
        raise TypeError("find_subscriber needs an id or an email")
    return row_to_subscriber(row) if row is not None else None


def subscriber_for_link(session: Session, subscriber_id: int, link_key: str) -> Subscriber | None:
    """The subscriber a signed link names, or ``None`` when there is no such subscriber or the link's key
    is not theirs (the link of a removed subscriber whose id was given out again)."""
    row = _row(session, subscriber_id)
    if row is None or not hmac.compare_digest(row.link_key.encode(), link_key.encode()):
        return None
    return row_to_subscriber(row)


def get_subscriber(session: Session, email: str) -> Subscriber:
    sub = find_subscriber(session, email=email)
    if sub is None:
        raise SubscriberNotFoundError(f"no subscriber {email}")
    return sub


def list_subscribers(session: Session, status: SubscriberStatus | None = None) -> list[Subscriber]:
    q = select(SubscriberRow).order_by(SubscriberRow.id)
    if status is not None:
        q = q.where(SubscriberRow.status == status.value)
    return [row_to_subscriber(r) for r in session.scalars(q)]


def due_on(day: date) -> ColumnElement[bool]:
    """SQL: the subscribers whose cadence gives them a digest for listing day ``day``: every daily one, and
    the weekly ones whose weekday is ``day``'s (digest.cadence.is_due says the same of one subscriber)."""
    return or_(SubscriberRow.frequency != "weekly", SubscriberRow.weekday == day.weekday())


def _due_where(day: date, weekly_only: bool) -> list[ColumnElement[bool]]:
    where = [SubscriberRow.status == SubscriberStatus.active.value, due_on(day)]
    if weekly_only:
        where.append(SubscriberRow.frequency == "weekly")
    return where


def list_due(session: Session, day: date, *, weekly_only: bool = False) -> list[Subscriber]:
    """The active subscribers due a digest for ``day`` (``weekly_only``: only the weekly ones, whose digest
    covers a week and so is due even when ``day`` itself listed nothing), in id order."""
    q = select(SubscriberRow).where(*_due_where(day, weekly_only)).order_by(SubscriberRow.id)
    return [row_to_subscriber(r) for r in session.scalars(q)]


def due_ids(session: Session, day: date, *, weekly_only: bool = False) -> list[int]:
    """The ids of the subscribers ``list_due`` would give, in id order (planning streams them in chunks)."""
    return list(session.scalars(select(SubscriberRow.id).where(*_due_where(day, weekly_only))
                                .order_by(SubscriberRow.id)))


def count_due(session: Session, day: date, *, weekly_only: bool = False) -> int:
    """How many subscribers ``list_due`` would give."""
    return int(session.scalar(select(func.count()).select_from(SubscriberRow).where(*_due_where(day, weekly_only)))
               or 0)
def subscribers_by_ids(session: Session, ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers with these ids, in the order of ``ids`` (unknown ids are left out); one query per
    ``IN_CHUNK`` ids."""
    found: dict[int, Subscriber] = {}
    for part in chunks(ids, IN_CHUNK):
        for row in session.scalars(select(SubscriberRow).where(SubscriberRow.id.in_(part))):
            found[row.id] = row_to_subscriber(row)
    return [found[i] for i in ids if i in found]


def ids_by_email(session: Session, emails: Sequence[str]) -> dict[str, int]:
    """The stored subscribers among ``emails`` (normalised addresses): address -> id, one query per
    ``IN_CHUNK`` addresses."""
    out: dict[str, int] = {}
    for part in chunks(emails, IN_CHUNK):
        out.update((e, i) for i, e in session.execute(
            select(SubscriberRow.id, SubscriberRow.email).where(SubscriberRow.email.in_(part))))
    return out


def insert_subscribers(session: Session, rows: Sequence[dict[str, object]],
                       status: SubscriberStatus = SubscriberStatus.active) -> dict[str, int]:
    """Store new subscribers in one executemany: ``rows`` hold already validated column values (at least
    ``email``, normalised); each gets its own random link key. An address stored meanwhile by another
    writer is left as it is. Returns address -> id of the rows inserted."""
    now = utcnow()
    active = status is SubscriberStatus.active
    values = [
        {"name": None, "interests": [], "negative_interests": [], "include_keywords": [], "exclude_keywords": [],
         "seed_papers": [], "max_papers": 10, "frequency": "daily", "timezone": "UTC",
         "follow_orgs": [], "follow_authors": [], "only_with_code": False, **r,
         "status": status.value, "link_key": new_link_key(), "created_at": now, "status_changed_at": now,
         "confirmed_at": now if active else None}
        for r in rows
    ]
    got = insert_ignoring_conflicts(session, SubscriberRow, values,
                                    returning=(SubscriberRow.id, SubscriberRow.email))
    return {email: sid for sid, email in got}


def update_subscribers(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Set already validated column values on stored subscribers, in one executemany: each row holds
    ``id`` and the columns to change (the others keep their value)."""
    if rows:
        session.execute(update(SubscriberRow), list(rows))


def iter_subscribers(session: Session, status: SubscriberStatus | None = None,
                     chunk: int = IN_CHUNK) -> Iterator[Subscriber]:
    """Every subscriber (with ``status``, when given) in id order, read ``chunk`` rows at a time."""
    last = 0
    while True:
        q = select(SubscriberRow).where(SubscriberRow.id > last).order_by(SubscriberRow.id).limit(chunk)
        if status is not None:
            q = q.where(SubscriberRow.status == status.value)
        rows = list(session.scalars(q))
        for row in rows:
            yield row_to_subscriber(row)
        session.expunge_all()
        if len(rows) < chunk:
            return
        last = rows[-1].id


def remove_subscriber(session: Session, email: str) -> None:
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email_key(email)))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {email}")
    session.delete(row)
    session.flush()


def request_subscription(session: Session, email: str, interests: Sequence[str], max_papers: int) -> int | None:
    """A sign-up: a new address is stored ``pending`` with what was typed; ``None`` when the address is
    already active (it gets no mail). Returns the id of the subscriber to send a confirmation to.

    For a known address (pending, unsubscribed, bounced) nothing it has changes until the confirmation is
    used: anyone may type any address, so what was typed waits as *pending* preferences, applied by
    ``confirm_subscriber`` (a later sign-up replaces them)."""
    address = normalise_email(email)
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == address))
    if row is None:
        return add_subscriber(session, address, interests=interests, max_papers=max_papers,
                              status=SubscriberStatus.pending).id
    if row.status == SubscriberStatus.active.value:
        return None
    row.pending_interests = clean_list(interests, "interests")
    row.pending_max_papers = check_max_papers(max_papers)
    session.flush()
    return row.id


def confirm_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    """Make the subscriber active (a used confirmation) with the preferences their sign-up typed, if it
    left any pending; ``None`` if there is no such subscriber. Idempotent."""
    row = _row(session, subscriber_id)
    if row is None:
        return None
    if row.status != SubscriberStatus.active.value:
        _set_status(row, SubscriberStatus.active)
        row.confirmed_at = utcnow()
        if row.pending_interests is not None:
            row.interests = list(row.pending_interests)
        if row.pending_max_papers is not None:
            row.max_papers = row.pending_max_papers
    row.pending_interests = row.pending_max_papers = None
    session.flush()
    return row_to_subscriber(row)


def unsubscribe_subscriber(session: Session, subscriber_id: int) -> bool:
    """Stop mailing the subscriber; ``False`` if there is no such subscriber. Idempotent. A sign-up that
    was waiting for its confirmation is forgotten with it."""
    row = _row(session, subscriber_id)
    if row is None:
        return False
    _set_status(row, SubscriberStatus.unsubscribed)
    row.pending_interests = row.pending_max_papers = None
    session.flush()
    return True


def update_preferences(session: Session, subscriber_id: int, prefs: Preferences) -> Subscriber:
    """Replace the subscriber's preferences; raises ``ValueError`` (nothing changed) on a bad value and
    ``SubscriberNotFoundError`` when there is no such subscriber."""
    row = _row(session, subscriber_id)
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {subscriber_id}")
    _apply(row, prefs)
    session.flush()
    return row_to_subscriber(row)


def set_status(session: Session, email: str, status: SubscriberStatus | str) -> Subscriber:
    """The operator's door to a subscriber's status, e.g. restoring a suppressed (``bounced``) address to
    ``active``. Raises ``ValueError`` for an unknown status and ``SubscriberNotFoundError``."""
    try:
        new = SubscriberStatus(status)
    except ValueError:
        raise ValueError(f"status must be one of {', '.join(s.value for s in SubscriberStatus)}, "
                         f"not {status!r}") from None
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == normalise_email(email)))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {email.strip()}")
    _set_status(row, new)
    session.flush()
    return row_to_subscriber(row)


def renew_feed_key(session: Session, subscriber_id: int) -> Subscriber:
    """Turn the subscriber's Atom feed on under a new random key: the URL of any earlier feed stops working.
    Raises ``SubscriberNotFoundError``."""
    row = _row(session, subscriber_id)
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {subscriber_id}")
    row.feed_key = new_link_key()  # 128 random bits, like the link key
    session.flush()
    return row_to_subscriber(row)


def drop_feed_key(session: Session, subscriber_id: int) -> Subscriber:
    """Turn the subscriber's Atom feed off: every feed URL of theirs stops working. Idempotent; raises
    ``SubscriberNotFoundError``."""
    row = _row(session, subscriber_id)
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {subscriber_id}")
    row.feed_key = None
    session.flush()
    return row_to_subscriber(row)


# What ``edit_subscriber`` may change: the preferences (validated by ``_apply``), plus these.
_EDITABLE_EXTRA = ("name", "status")


def edit_subscriber(session: Session, email: str, **changes: object) -> Subscriber:
    """The operator's edit of one subscriber: any of the ``Preferences`` fields (interests,
    negative_interests, include_keywords, exclude_keywords, max_papers, frequency, weekday, seed_papers:
    already resolved arXiv ids, thumbnails, plain_text, follow_orgs, follow_authors, only_with_code) and ``name``, ``status``. Fields not given keep their value. Every value is
    validated before anything is written: ``ValueError`` / ``InvalidAddressError`` leave the row as it was;
    ``SubscriberNotFoundError`` for an unknown address; ``TypeError`` for a field that cannot be edited.
    ``status="active"`` makes a bounced (suppressed), pending or unsubscribed address active again."""
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == normalise_email(email)))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {email}")
    pref_fields = {f.name for f in fields(Preferences)}
    unknown = set(changes) - pref_fields - set(_EDITABLE_EXTRA)
    if unknown:
        raise TypeError(f"cannot edit {', '.join(sorted(unknown))}")
    current = Preferences(**{f: v for f in pref_fields if f != "seed_papers" and (v := getattr(row, f, None)) is not None})
    prefs = replace(current, **{k: v for k, v in changes.items() if k in pref_fields})
    if prefs.frequency != "weekly" and "weekday" not in changes:
        prefs = replace(prefs, weekday=None)  # weekly -> daily: the weekday goes with it
    name = clean_name(changes["name"]) if "name" in changes else row.name  # type: ignore[arg-type]
    status: SubscriberStatus | None = None
    if "status" in changes:
        try:
            status = SubscriberStatus(changes["status"])
        except ValueError:
            raise ValueError(f"status must be one of {', '.join(s.value for s in SubscriberStatus)}, "
                             f"not {changes['status']!r}") from None
    _apply(row, prefs)  # validates all of its values before writing any
    row.name = name
    if status is not None:
        _set_status(row, status)
        if status is SubscriberStatus.active and row.confirmed_at is None:
            row.confirmed_at = utcnow()
    session.flush()
    return row_to_subscriber(row)
