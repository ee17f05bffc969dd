"""The web archive and the feeds (issue 15).

Per subscriber, at signed links (``digest.signing``) whose key must be the one stored on them: the page of
one digest (``/d/{token}``, the "View in browser" link of each mail), the list of their sent digests
(``/archive/{token}``) and the Atom feed of their picks (``/feed/{token}.atom``, which works only while its
feed key is the stored one: the preferences page renews or clears it). View and archive links expire like
preferences links, and every mail brings fresh ones; a feed URL does not expire.

Public, for anyone: each listing day's papers as a page and an Atom feed (``/day/{YYYY-MM-DD}``,
``/day/{YYYY-MM-DD}.atom``, ``/day/latest``, ``/day/latest.atom``). They show what the listing shows and
nothing of any subscriber.

Everything here is a GET and changes nothing."""

from __future__ import annotations

import hmac
import math
import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from digest.feeds import ATOM_TYPE, FEED_ENTRIES, FeedLinks, day_feed, picks_feed
from digest.models import Paper
from digest.render import build_context, digest_page_vars, paper_view
from digest.signing import BadToken
from digest.store.archive import (
    count_sent_digests,
    digest_of,
    latest_listing_date,
    neighbour_listing_dates,
    picked_papers,
    sent_digests,
)
from digest.store.papers import list_papers, papers_by_ids
from digest.web.pages import bad_link, message, page
from digest.web.routes import Web, _linked
from digest.web.state import WebState

router = APIRouter()

ARCHIVE_PAGE = 30  # digests per archive page
PUBLIC_CACHE = "public, max-age=300"  # the day pages: the same for everyone, upvotes move slowly
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
LINK_EXPIRED = ("This link has expired. The links in your latest digest work: each mail brings fresh ones "
                "(its \u201cPast digests\u201d link lists every digest).")
NO_DIGEST = ("Not found", "Digest not found", "This digest is not in the archive.")
FEED_GONE = ("Feed turned off", "This feed no longer works",
             "Its owner turned the feed off or replaced its address. The current address, if there is one, "
             "is on the preferences page.")


def _max_age(web: WebState) -> int:
    return web.settings.preferences_link_days * 86400


def _long(day: date) -> str:
    return f"{day:%A}, {day.day} {day:%B %Y}"


def _iso_day(text: str) -> date | None:
    """``text`` as a date when it is exactly ``YYYY-MM-DD`` and a real day, else ``None``."""
    if not _ISO_DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- one digest ---------------------------------------------------------------------------------------


@router.get("/d/{token}", response_class=HTMLResponse)
def digest_page(token: str, web: Web) -> HTMLResponse:
    """The digest a mail held, rebuilt from its outbox row: the same papers, order and reasons."""
    try:
        link = web.signer.verify("view", token, max_age=_max_age(web))
        day = _iso_day(str(link.get("d", "")))
        if day is None:
            raise BadToken("invalid view link")
        with web.sessions() as session:
            sub = _linked(session, "view", link)
            record = digest_of(session, link["subscriber_id"], day)
            papers = papers_by_ids(session, [p.arxiv_id for p in record.picks]) if record else {}
    except BadToken as e:
        return bad_link(e, LINK_EXPIRED)
    if record is None:
        return message(404, *NO_DIGEST)
    pairs = [(papers[p.arxiv_id], p) for p in record.picks if p.arxiv_id in papers]
    ctx = build_context(sub, day, pairs, web.settings, web.signer)
    return page("digest.html.j2", 200, title=f"Daily Papers, {day.isoformat()} - Papers Digest",
                **digest_page_vars(ctx))


# -- the archive --------------------------------------------------------------------------------------


@router.get("/archive/{token}", response_class=HTMLResponse)
def archive_page(token: str, web: Web, page_no: Annotated[str, Query(alias="page")] = "1") -> HTMLResponse:
    """The subscriber's sent digests, newest first, ``ARCHIVE_PAGE`` a page (``?page=N``)."""
    n = int(page_no) if page_no.isdigit() and 0 < len(page_no) < 7 else 1
    n = max(n, 1)
    try:
        link = web.signer.verify("archive", token, max_age=_max_age(web))
        with web.sessions() as session:
            sub = _linked(session, "archive", link)
            total = count_sent_digests(session, link["subscriber_id"])
            entries = sent_digests(session, link["subscriber_id"], limit=ARCHIVE_PAGE, offset=(n - 1) * ARCHIVE_PAGE)
    except BadToken as e:
        return bad_link(e, LINK_EXPIRED)
    assert sub.id is not None and sub.link_key is not None
    sid, key = sub.id, sub.link_key
    pages = max(math.ceil(total / ARCHIVE_PAGE), 1)
    here = f"/archive/{token}"
    rows = [{"url": web.signer.view_url(sid, e.digest_date, key=key), "date_long": _long(e.digest_date),
             "papers": e.papers, "top_title": e.top_title} for e in entries]
    return page(
        "archive.html.j2", 200, title="Past digests - Papers Digest", email=sub.email, total=total, entries=rows,
        page_no=n, pages=pages, newer_url=f"{here}?page={min(n - 1, pages)}" if n > 1 else None,
        older_url=f"{here}?page={n + 1}" if n < pages else None,
        feed_url=web.signer.feed_url(sid, key=key, feed_key=sub.feed_key) if sub.feed_key else None,
        preferences_url=web.signer.preferences_url(sid, key=key),
    )


# -- the feed of a subscriber's picks -------------------------------------------------------------------


@router.get("/feed/{token}.atom")
def picks_feed_page(token: str, web: Web) -> Response:
    try:
        link = web.signer.verify("feed", token)  # no expiry: a feed is revoked by its key
        with web.sessions() as session:
            sub = _linked(session, "feed", link)
            stored, given = sub.feed_key, link.get("f")
            if not stored or not isinstance(given, str) or not hmac.compare_digest(stored.encode(), given.encode()):
                return message(410, *FEED_GONE)
            picked = picked_papers(session, link["subscriber_id"], limit=FEED_ENTRIES)
            papers = papers_by_ids(session, [p.pick.arxiv_id for p in picked])
    except BadToken as e:
        return bad_link(e)
    assert sub.id is not None and sub.link_key is not None
    links = FeedLinks(self_url=f"{web.signer.public_url}/feed/{token}.atom",
                      page_url=web.signer.archive_url(sub.id, key=sub.link_key),
                      public_url=web.signer.public_url, hf_base_url=web.settings.hf_base_url)
    body = picks_feed(sub.id, [(p.digest_date, p.pick, papers[p.pick.arxiv_id]) for p in picked
                               if p.pick.arxiv_id in papers], links)
    return Response(body, media_type=ATOM_TYPE)


# -- the public pages of each listing day ------------------------------------------------------------------


def _no_day(day: str) -> HTMLResponse:
    return message(404, "Not found", "No papers for that day",
                   f"Nothing is stored for {day}: the listing of that day was not fetched, or had no papers.",
                   "/day/latest", "The latest day")


def _day(web: WebState, day: date) -> tuple[list[Paper], date | None, date | None]:
    with web.sessions() as session:
        papers = list_papers(session, day)  # most upvoted first
        before, after = neighbour_listing_dates(session, day) if papers else (None, None)
    return papers, before, after


def _latest(web: WebState) -> date | None:
    with web.sessions() as session:
        return latest_listing_date(session)


def _public(response: Response) -> Response:
    response.headers["Cache-Control"] = PUBLIC_CACHE
    return response


def _day_feed(web: WebState, day: date, name: str) -> Response:
    papers, _, _ = _day(web, day)
    if not papers:
        return _no_day(day.isoformat())
    base = web.signer.public_url
    links = FeedLinks(self_url=f"{base}/day/{name}.atom", page_url=f"{base}/day/{day.isoformat()}",
                      public_url=base, hf_base_url=web.settings.hf_base_url)
    return _public(Response(day_feed(name, day, papers, links), media_type=ATOM_TYPE))


@router.get("/day/latest.atom")
def latest_day_feed(web: Web) -> Response:
    """The feed of the newest stored listing day: one address a feed reader can keep."""
    latest = _latest(web)
    return _no_day("any day") if latest is None else _day_feed(web, latest, "latest")


@router.get("/day/latest")
def latest_day(web: Web) -> Response:
    latest = _latest(web)
    if latest is None:
        return _no_day("any day")
    return RedirectResponse(f"/day/{latest.isoformat()}", status_code=302)


@router.get("/day/{day}.atom")
def day_feed_page(day: str, web: Web) -> Response:
    parsed = _iso_day(day)
    return _no_day(day[:10]) if parsed is None else _day_feed(web, parsed, parsed.isoformat())


@router.get("/day/{day}", response_class=HTMLResponse)
def day_page(day: str, web: Web) -> Response:
    parsed = _iso_day(day)
    if parsed is None:
        return _no_day(day[:10])
    papers, before, after = _day(web, parsed)
    if not papers:
        return _no_day(parsed.isoformat())
    cards: list[dict[str, Any]] = []
    for n, p in enumerate(papers, 1):
        v = paper_view(p, web.settings.hf_base_url)
        cards.append({"n": n, "title": v.title, "url": v.url, "authors": v.authors, "reason": "", "evidence": "",
                      "upvotes": v.upvotes, "summary": v.summary, "summary_is_ai": v.summary_is_ai,
                      "links": v.links, "code_url": v.code_url, "stars": v.stars, "project_url": v.project_url,
                      "organization": v.organization, "thumbnail": None, "more_url": None, "less_url": None})
    iso = parsed.isoformat()
    return _public(page(
        "day.html.j2", 200, title=f"Trending papers of {iso} - Papers Digest", date_iso=iso,
        date_long=_long(parsed), count=len(cards), cards=cards, feed_url=f"/day/{iso}.atom",
        prev_url=f"/day/{before.isoformat()}" if before else None, prev_iso=before.isoformat() if before else "",
        next_url=f"/day/{after.isoformat()}" if after else None, next_iso=after.isoformat() if after else "",
    ))


__all__ = ["ARCHIVE_PAGE", "router"]
