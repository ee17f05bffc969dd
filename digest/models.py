"""Domain types shared by every step. Plain data: no database, no network."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


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
    thumbnail_url: str | None = None
    organization: str | None = None

    @property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.arxiv_id}"

    def hf_url(self, base_url: str = "https://huggingface.co") -> str:
        return f"{base_url.rstrip('/')}/papers/{self.arxiv_id}"

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
