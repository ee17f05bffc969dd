"""Atom feeds (RFC 4287), built by feedgen: the papers picked for one subscriber, and one day's trending
listing. Plain data in, the feed's bytes out; the web pages serve them.

Ids are tag URIs (RFC 4151) under the host of ``public_url``, made only of what does not change between
fetches (the subscriber id, the digest or listing date, the arXiv id), so a feed reader never shows an entry
twice. ``updated`` of an entry is the date of the digest (picks) or of the listing (a day's papers) at
00:00 UTC; the feed's is that of its newest entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from urllib.parse import urlsplit

from feedgen.feed import FeedGenerator

from digest.models import Paper, Pick
from digest.render import SUMMARY_CHARS, paper_view, reason_text
from digest.text import one_line

FEED_ENTRIES = 100  # newest entries a feed carries
MAX_AUTHORS = 10  # authors named per entry
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class FeedLinks:
    """Where a feed lives: its own URL (rel=self), the page it mirrors (rel=alternate) and the site."""

    self_url: str
    page_url: str
    public_url: str
    hf_base_url: str = "https://huggingface.co"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=timezone.utc)


def _tag(public_url: str, day: date | str, specific: str) -> str:
    host = (urlsplit(public_url).hostname or "localhost").lower()
    stamp = day.isoformat() if isinstance(day, date) else day
    return f"tag:{host},{stamp}:{specific}"


def _feed(feed_id: str, title: str, subtitle: str, links: FeedLinks) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(feed_id)
    fg.title(title)
    fg.subtitle(subtitle)
    fg.author({"name": "Papers Digest", "uri": links.public_url.rstrip("/") + "/"})
    fg.link(href=links.self_url, rel="self", type="application/atom+xml")
    fg.link(href=links.page_url, rel="alternate", type="text/html")
    fg.language("en")
    fg.generator("papers-digest")
    return fg


def _entry(fg: FeedGenerator, entry_id: str, paper: Paper, day: date, summary: str, links: FeedLinks) -> None:
    view = paper_view(paper, links.hf_base_url, SUMMARY_CHARS)
    fe = fg.add_entry(order="append")  # feedgen prepends by default: keep the order given (newest first)
    fe.id(entry_id)
    fe.title(view.title)
    # One link per entry, the paper's page: feedgen 1.0 writes only the href of an entry's links
    # (lkiesow/python-feedgen#135), so a second one would be a second rel="alternate", which RFC 4287
    # forbids; a lone link without rel is the alternate one.
    fe.link(href=view.url, rel="alternate", type="text/html")
    names = [n for n in (one_line(a) for a in paper.authors) if n][:MAX_AUTHORS]
    if names:
        fe.author([{"name": n} for n in names])
    fe.summary(summary)
    fe.updated(_midnight(day))
    if paper.published_at is not None:
        published = paper.published_at if paper.published_at.tzinfo else paper.published_at.replace(tzinfo=timezone.utc)
        fe.published(published)


def _bytes(fg: FeedGenerator, newest: date | None) -> bytes:
    fg.updated(_midnight(newest) if newest is not None else datetime.now(timezone.utc))
    return bytes(fg.atom_str(pretty=True))


def picks_feed(subscriber_id: int, picks: Sequence[tuple[date, Pick, Paper]], links: FeedLinks) -> bytes:
    """The feed of the papers picked for a subscriber: ``(digest date, pick, paper)`` newest digest first
    (at most ``FEED_ENTRIES`` are used). Each entry's summary starts with why the paper was picked."""
    fg = _feed(_tag(links.public_url, "2026", f"picks/{subscriber_id}"), "Papers Digest: your picks",
               "The papers picked for you, newest digest first.", links)
    picks = picks[:FEED_ENTRIES]
    for day, pick, paper in picks:
        view = paper_view(paper, links.hf_base_url, SUMMARY_CHARS)
        why = reason_text(pick.reason)
        if pick.evidence:  # the abstract's sentence that matched the interest, as in the mail
            why = f"{why}: \u201c{one_line(pick.evidence)}\u201d"
        summary = f"{why}. {view.summary}".strip() if view.summary else why
        _entry(fg, _tag(links.public_url, day, f"picks/{subscriber_id}/{paper.arxiv_id}"), paper, day, summary, links)
    return _bytes(fg, picks[0][0] if picks else None)


def day_feed(feed_key: str, day: date, papers: Sequence[Paper], links: FeedLinks) -> bytes:
    """The feed of one listing day's papers, most upvoted first (at most ``FEED_ENTRIES``); ``feed_key``
    names the feed in its id (the date, or "latest" for the feed that always shows the newest day)."""
    fg = _feed(_tag(links.public_url, "2026", f"day/{feed_key}"), f"Trending papers of {day.isoformat()}",
               "The day's Hugging Face Daily Papers listing, most upvoted first.", links)
    for paper in papers[:FEED_ENTRIES]:
        view = paper_view(paper, links.hf_base_url, SUMMARY_CHARS)
        votes = f"{view.upvotes} upvote{'' if view.upvotes == 1 else 's'}"
        summary = f"{votes}. {view.summary}" if view.summary else votes
        _entry(fg, _tag(links.public_url, paper.listing_date, f"day/{paper.arxiv_id}"), paper, paper.listing_date,
               summary, links)
    return _bytes(fg, day if papers else None)


__all__ = ["ATOM_TYPE", "FEED_ENTRIES", "FeedLinks", "day_feed", "picks_feed"]
