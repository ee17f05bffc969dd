"""The forms of the web pages: what each accepts, parsed and validated by the same domain rules as the
CLI (``digest.models``). A value the user must correct raises ``FormError`` with the message to show."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from digest.config import Settings
from digest.models import (
    DEFAULT_WEEKDAY,
    FREQUENCIES,
    WEEKDAY_NAMES,
    WEEKDAYS,
    InvalidAddressError,
    NonAsciiAddressError,
    check_max_papers,
    clean_list,
    normalise_email,
    parse_weekday,
)
from digest.store.subscribers import Preferences

MAX_FIELD_CHARS = 10_000  # one textarea
MAX_BODY_BYTES = 64 * 1024  # every form here is a few KB; a reverse proxy should cap chunked bodies too


class FormError(ValueError):
    """A form value the user must correct (shown on the page, 400)."""


def lines(text: str, what: str) -> list[str]:
    """A textarea's entries, one per line, cleaned like every stored list."""
    if len(text) > MAX_FIELD_CHARS:
        raise FormError(f"{what}: too long")
    try:
        return clean_list(text.splitlines(), what)
    except ValueError as e:
        raise FormError(str(e)) from None


def max_papers(raw: str) -> int:
    try:
        return check_max_papers(int(raw.strip()))
    except ValueError:
        raise FormError("papers per mail must be a whole number between 1 and 100") from None


def address(raw: str) -> str:
    try:
        return normalise_email(raw)
    except NonAsciiAddressError as e:
        raise FormError(str(e)) from None  # valid, but not deliverable: say why and what to use
    except InvalidAddressError as e:
        # the validator's reason without echoing the raw input twice
        text = str(e)
        reason = text.split(": ", 1)[1] if ": " in text and text.startswith("invalid email address") else ""
        raise FormError(f"That doesn't look like a valid email address{': ' + reason if reason else '.'}") from None


@dataclass(frozen=True)
class SubscribeForm:
    email: str
    interests: list[str]
    max_papers: int

    @classmethod
    def parse(cls, email: str, interests: str, papers: str) -> SubscribeForm:
        return cls(address(email), lines(interests, "interests"), max_papers(papers))


def seed_papers(text: str | None) -> list[str] | None:
    """The "Seed papers" textarea: one arXiv id or arXiv / Hugging Face link per line (``None``: the form
    had no such field, the stored seeds stay)."""
    if text is None:
        return None
    from digest.seeds import SeedError, parse_paper_ref

    try:
        return list(dict.fromkeys(parse_paper_ref(line) for line in lines(text, "seed papers")))
    except SeedError as e:
        raise FormError(f"Seed papers: {e}") from None


class SeedsUnavailable(RuntimeError):
    """Hugging Face could not be reached to look up seed papers (try again later)."""


def resolve_seeds(engine: Engine, settings: Settings, ids: list[str]) -> None:
    """Make sure every seed paper is stored: fetched from Hugging Face when not, else ``FormError``."""
    from digest.seeds import SeedError, resolve_seed_papers
    from digest.sources import FetchError, ListingFormatError

    try:
        resolve_seed_papers(engine, settings, ids)
    except SeedError as e:
        raise FormError(f"Seed papers: {e}") from None
    except (FetchError, ListingFormatError):
        raise SeedsUnavailable("Hugging Face could not be reached to look up your seed papers. Nothing was saved: "
                               "please try again later.") from None


def checkbox(value: str | None, what: str) -> bool:
    """A checkbox: absent is unchecked; checked sends "on" (or a value the page gave it)."""
    if value is None or value == "":
        return False
    if value in ("on", "1", "true", "yes"):
        return True
    raise FormError(f"{what}: not a checkbox value")


def weekday(raw: str) -> int:
    try:
        return parse_weekday(raw)
    except ValueError:
        raise FormError("the weekday must be one of Monday to Sunday") from None


def parse_preferences(interests: str, negative_interests: str, include_keywords: str, exclude_keywords: str,
                      papers: str, frequency: str, seeds: str | None = None, day: str = "",
                      thumbnails: str | None = None, plain_text: str | None = None,
                      follow_orgs: str = "", follow_authors: str = "",
                      only_with_code: str | None = None) -> Preferences:
    """The preferences form. The weekday counts only for a weekly digest (the select is always there)."""
    if frequency not in FREQUENCIES:
        raise FormError("frequency must be daily or weekly")
    return Preferences(
        interests=lines(interests, "interests"), negative_interests=lines(negative_interests, "negative interests"),
        include_keywords=lines(include_keywords, "include keywords"),
        exclude_keywords=lines(exclude_keywords, "exclude keywords"), max_papers=max_papers(papers),
        frequency=frequency, seed_papers=seed_papers(seeds),
        weekday=(weekday(day) if day.strip() else DEFAULT_WEEKDAY) if frequency == "weekly" else None,
        thumbnails=checkbox(thumbnails, "thumbnails"), plain_text=checkbox(plain_text, "plain text only"),
        follow_orgs=lines(follow_orgs, "labs you follow"), follow_authors=lines(follow_authors, "authors you follow"),
        only_with_code=checkbox(only_with_code, "only papers with code"),
    )


def preferences_values(prefs: Preferences) -> dict[str, object]:
    """What the preferences form shows for stored preferences."""
    return {
        "interests": "\n".join(prefs.interests), "negative_interests": "\n".join(prefs.negative_interests),
        "include_keywords": "\n".join(prefs.include_keywords), "exclude_keywords": "\n".join(prefs.exclude_keywords),
        "max_papers": prefs.max_papers, "frequency": prefs.frequency,
        "seed_papers": "\n".join(prefs.seed_papers or ()),
        "weekday": WEEKDAYS[DEFAULT_WEEKDAY if prefs.weekday is None else parse_weekday(prefs.weekday)],
        "thumbnails": prefs.thumbnails, "plain_text": prefs.plain_text,
        "follow_orgs": "\n".join(prefs.follow_orgs), "follow_authors": "\n".join(prefs.follow_authors),
        "only_with_code": prefs.only_with_code,
    }
