"""Domain types shared by every step. Plain data: no database, no network."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from email_validator import EmailNotValidError, ValidatedEmail, validate_email


_VERSION_SUFFIX = re.compile(r"v\d+$")


def normalise_arxiv_id(raw: str) -> str:
    """``"2403.06634v2 "`` -> ``"2403.06634"``: the store's key for a paper."""
    return _VERSION_SUFFIX.sub("", raw.strip())


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as a listing presents it, normalised (versionless arXiv id, collapsed whitespace)."""

    arxiv_id: str
    title: str
    abstract: str
    authors: tuple[str, ...]
    listing_date: date
    published_at: datetime | None = None
    upvotes: int = 0
    num_comments: int = 0
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    github_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None  # HF's social thumbnail (``thumbnail``), one size for all (digest.render)
    organization: str | None = None  # the submitting lab's display name ("ByteDance Seed")
    organization_name: str | None = None  # its Hugging Face name, the handle one follows ("ByteDance-Seed")
    github_stars: int | None = None  # None: unknown (no repository, or the listing did not say)
    media_urls: tuple[str, ...] = ()  # what the authors uploaded (images, GIFs, videos), http(s) only

    @property
    def has_code(self) -> bool:
        """Whether the listing links a code repository: the "Code" badge (and, later, a ranking filter)."""
        return bool(self.github_url)

    @property
    def content_hash(self) -> str:
        """Hash of the text that is embedded: a changed title or abstract changes it."""
        return content_hash(self.title, self.abstract)


def content_hash(title: str, abstract: str) -> str:
    return hashlib.sha256(f"{title}\n\n{abstract}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Listing:
    """One day's listing. ``papers == ()`` is a valid empty day (weekend, holiday), not an error."""

    listing_date: date
    papers: tuple[Paper, ...]
    source: str  # URL or file path it came from

    @property
    def is_empty(self) -> bool:
        return not self.papers


class SubscriberStatus(StrEnum):
    pending = "pending"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.active
    interests: tuple[str, ...] = ()
    negative_interests: tuple[str, ...] = ()
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()
    seed_papers: tuple[str, ...] = ()
    max_papers: int = 10
    frequency: str = "daily"
    timezone: str = "UTC"
    id: int | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    link_key: str | None = None  # in every signed link of this subscriber (digest.signing)
    status_changed_at: datetime | None = None
    pending_interests: tuple[str, ...] | None = None  # typed at a sign-up waiting for its confirmation
    pending_max_papers: int | None = None
    feed_key: str | None = None  # in the URL of the Atom feed of their picks; None: no feed
    weekday: int | None = None  # weekly: the listing day's weekday of their digest, 0 = Monday; daily: None
    thumbnails: bool = False  # show each paper's thumbnail image in the HTML part
    plain_text: bool = False  # send the text part alone (a text/plain mail, no HTML)
    follow_orgs: tuple[str, ...] = ()  # labs followed: HF handle or display name, any case
    follow_authors: tuple[str, ...] = ()  # authors followed, by full name, any case
    only_with_code: bool = False  # never pick a paper without a GitHub repository


@dataclass(frozen=True, slots=True)
class UpsertReport:
    """What storing a listing did."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    new_ids: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged


@dataclass(frozen=True, slots=True)
class Pick:
    """One paper chosen for one subscriber's digest, with why it was chosen."""

    arxiv_id: str
    rank: int  # 1 = first in the mail
    score: float
    reason: str  # "interest: <text>", "seed paper: <id>", "liked: <id>" or "trending"
    # The abstract's sentence that matches the interest of ``reason`` best (digest.explain); None when no
    # interest decided the pick, or no sentence says anything about it.
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class PickColumns:
    """The picks of many subscribers as columns, what the ranking hands planning (no object per pick).

    Every subscriber of ``subscriber_ids`` gets a delivery (none of their picks: nothing to send). Item
    ``k`` is subscriber ``subscriber_ids[row[k]]``'s paper ``arxiv_id[k]`` at ``rank[k]`` (1 = first)."""

    subscriber_ids: list[int]
    row: list[int]
    rank: list[int]
    arxiv_id: list[str]
    score: list[float]
    reason: list[str]
    evidence: list[str | None] = field(default_factory=list)  # per item (``Pick.evidence``); empty: none

    @classmethod
    def from_picks(cls, picks: Mapping[int, Sequence[Pick]]) -> PickColumns:
        cols = cls(list(picks), [], [], [], [], [], [])
        for r, sub_picks in enumerate(picks.values()):
            for p in sub_picks:
                cols.row.append(r)
                cols.rank.append(p.rank)
                cols.arxiv_id.append(p.arxiv_id)
                cols.score.append(float(p.score))
                cols.reason.append(p.reason)
                cols.evidence.append(p.evidence)
        if not any(e is not None for e in cols.evidence):
            cols.evidence.clear()  # no evidence: the empty column, as the ranking hands it
        return cols


# -- what people type: addresses, names and lists of interests -------------------------------------------

MAX_LIST_ITEMS = 30  # interests, keywords, seed papers per field
MAX_ITEM_CHARS = 200
MAX_PAPERS = 100  # papers per digest, at most
DEFAULT_MAX_PAPERS = 10  # papers per daily digest unless the subscriber chooses (weekly: a setting)
FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_WEEKDAY = 4  # Friday: a weekly digest holds Saturday to Friday, every listing day of the week


def check_frequency(frequency: str) -> str:
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}, not {frequency!r}")
    return frequency


def parse_weekday(raw: str | int) -> int:
    """``"thu"``, ``"Thursday"`` or ``3`` -> 3 (``date.weekday()``: 0 is Monday); else ``ValueError``.
    The weekday of a weekly digest is the weekday of its digest date, a listing day."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 0 <= raw <= 6:
            return raw
    elif isinstance(raw, str):
        key = raw.strip().lower()
        for i, (short, full) in enumerate(zip(WEEKDAYS, WEEKDAY_NAMES)):
            if key in (short, full.lower()):
                return i
    raise ValueError(f"weekday must be one of {', '.join(WEEKDAYS)}, not {raw!r}")


def cadence_text(frequency: str, weekday: int | None) -> str:
    """``"daily"`` or ``"weekly on Thursday"``: how a cadence is shown (CLI, pages)."""
    if frequency == "weekly" and weekday is not None:
        return f"weekly on {WEEKDAY_NAMES[weekday]}"
    return frequency


class InvalidAddressError(ValueError):
    """An address or name that must not be stored (and must never reach a mail header)."""


class NonAsciiAddressError(InvalidAddressError):
    """A valid address that the sender cannot deliver: it needs SMTPUTF8, which the send path does not speak."""


def _validated(raw: str) -> ValidatedEmail:
    if any(c in raw for c in "\r\n\0"):
        raise InvalidAddressError(f"invalid email address {raw!r}: contains a line break")
    if len(raw) > 320:
        raise InvalidAddressError("invalid email address: longer than 320 characters")
    try:
        return validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidAddressError(f"invalid email address {raw!r}: {e}") from e


def normalise_email(raw: str) -> str:
    """A syntactically valid, deliverable address, lower-cased, so one person is one subscriber: the one
    rule of every door that takes a new address (sign-up, CLI, import).

    An address with non-ASCII characters is refused (``NonAsciiAddressError``): mailing it needs SMTPUTF8
    end to end; the message offers the ASCII (IDNA) form of an international domain when there is one.
    Deliverability (DNS) is not checked here: double opt-in proves an address works far better than an
    MX lookup, and sign-up must not depend on the network."""
    result = _validated(raw)
    if not raw.strip().isascii():
        hint = (f": use {result.ascii_email.lower()}, the ASCII form of its domain" if result.ascii_email
                else ": please use an address in plain ASCII characters")
        raise NonAsciiAddressError(
            f"{raw.strip()!r} has non-ASCII characters, which the digest cannot be mailed to yet{hint}")
    return (result.ascii_email or result.normalized).lower()  # an IDNA domain stays in its xn-- form


def email_key(raw: str) -> str:
    """How an address is looked up (find, remove): ``normalise_email`` without the ASCII rule, so an
    address stored before that rule can still be found and removed."""
    result = _validated(raw)
    return ((result.ascii_email or result.normalized) if raw.strip().isascii() else result.normalized).lower()


def clean_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    if any(c in raw for c in "\r\n\0"):
        raise InvalidAddressError(f"invalid name {raw!r}: contains a line break")
    name = " ".join(raw.split())
    if len(name) > MAX_ITEM_CHARS:
        raise InvalidAddressError(f"invalid name: longer than {MAX_ITEM_CHARS} characters")
    return name or None


def clean_list(values: Iterable[str], what: str) -> list[str]:
    """Interests, keywords or ids as stored: whitespace collapsed, empty and repeated entries dropped.
    Raises ``ValueError`` (naming ``what``) for an entry over ``MAX_ITEM_CHARS`` characters or more than
    ``MAX_LIST_ITEMS`` entries: the one cleaner of every list a subscriber gives (CLI, web, import)."""
    out: list[str] = []
    for v in values:
        v = " ".join(v.split())
        if not v or v in out:
            continue
        if len(v) > MAX_ITEM_CHARS:
            raise ValueError(f"{what}: each entry must be at most {MAX_ITEM_CHARS} characters")
        out.append(v)
    if len(out) > MAX_LIST_ITEMS:
        raise ValueError(f"{what}: at most {MAX_LIST_ITEMS} entries")
    return out


def check_max_papers(n: int) -> int:
    """``n`` if it is a valid number of papers per digest (1 to ``MAX_PAPERS``), else ``ValueError``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PAPERS:
        raise ValueError(f"papers per mail must be a whole number between 1 and {MAX_PAPERS}, not {n!r}")
    return n
