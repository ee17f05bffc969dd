"""Hugging Face Daily Papers: the JSON API and the page's hydration JSON, parsed into ``Listing``.

Two paths to one day's listing:

* API: ``GET /api/daily_papers?date=YYYY-MM-DD`` answers a bare JSON array of items.
* Page: ``GET /papers/date/YYYY-MM-DD`` (older: ``/papers?date=``) embeds the same items in the
  ``data-props`` JSON of the ``div`` with ``data-target="DailyPapers"``.

Every schema era seen in the wild is accepted (2024-03 thin items, 2024 page props, 2025-2026 items with
``ai_summary``/``ai_keywords``/``githubRepo``/``organization``); optional fields are simply absent.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
from bs4 import BeautifulSoup
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from digest.config import Settings
from digest.models import Listing, Paper, normalise_arxiv_id
from digest.sources.errors import FetchError, HostNotFoundError, ListingFormatError

log = logging.getLogger(__name__)

HYDRATION_TARGET = "DailyPapers"
_WHITESPACE = re.compile(r"\s+")
_FILE_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")

# Bounds on everything scraped, applied on the way in: a listing is data from the network, and one absurd
# field must not take the machine's memory (embedding costs ~310 MB per MB of text) or a column's width.
# Real values are far below: arXiv caps abstracts at 1,920 characters, titles stay under ~300.
MAX_ID_CHARS = 64  # the papers.arxiv_id column
MAX_TITLE_CHARS = 1_000
MAX_ABSTRACT_CHARS = 10_000
MAX_SUMMARY_CHARS = 2_000
MAX_AUTHORS = 200  # the first ones are kept (collaboration papers list thousands)
MAX_NAME_CHARS = 200  # an author or organisation name (the organization column is 200 wide)
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 100
MAX_URL_CHARS = 2_048  # longer: dropped, since a cut URL points somewhere else
MAX_MEDIA = 8  # media URLs kept per paper (real items carry 0-2)
MAX_COUNT = 100_000_000  # upvotes, comments: a number beyond this is not a count
MAX_FILE_BYTES = 64 * 1024 * 1024  # a saved listing; HTTP bodies: Settings.http_max_response_bytes
_BOM = "\ufeff"


# --------------------------------------------------------------------------------------------- parsing


def collapse(text: str) -> str:
    """Collapse runs of whitespace (2024 abstracts carry arXiv's hard line breaks)."""
    return _WHITESPACE.sub(" ", text).strip()


def bounded(text: str, limit: int) -> str:
    """``text`` collapsed and cut to at most ``limit`` characters (an ellipsis marks a cut). Only a
    prefix is ever scanned, so a huge value costs no more than a normal one."""
    short = collapse(text[: limit * 4 + 1])
    return short if len(short) <= limit else short[: limit - 1].rstrip() + "\u2026"


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _required_text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ListingFormatError(f"{where}: missing or empty '{key}'")
    return value


def _optional_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) <= MAX_URL_CHARS:
        return value.strip()
    return None


def _count(obj: dict[str, Any], key: str, where: str) -> int:
    """A count (upvotes, comments): absent or null is 0; anything but a whole number in
    ``[0, MAX_COUNT]`` is a malformed listing."""
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ListingFormatError(f"{where}: '{key}' is not a count (whole number 0-{MAX_COUNT}): {shown}")
    return value


def _optional_count(value: Any) -> int | None:
    """An optional count (GitHub stars): a whole number in ``[0, MAX_COUNT]``, else ``None``. Unlike upvotes it
    decides nothing (a badge), so a value that is not a count is dropped like a URL that is not http(s),
    rather than refusing the day's listing."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _handle(value: Any) -> str | None:
    """A Hugging Face name (an organization's handle): kept whole or not at all, since a cut name names
    someone else."""
    if isinstance(value, str) and 0 < len(value.strip()) <= MAX_NAME_CHARS and not _WHITESPACE.search(value.strip()):
        return value.strip()
    return None


# HF's generated social card of a paper: the ``thumbnail`` of 2025-2026 items, and the ``mediaUrl`` of most
# 2024 items. Other 2024 ``mediaUrl`` values are what the authors uploaded: media, not a thumbnail.
SOCIAL_THUMBNAIL = "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/"


def _media_urls(paper: dict[str, Any], item: dict[str, Any]) -> tuple[str, ...]:
    raw = paper.get("mediaUrls") or item.get("mediaUrls")
    values: list[Any] = list(raw[:MAX_MEDIA * 4]) if isinstance(raw, list) else []
    single = item.get("mediaUrl")  # 2024 items: one URL
    if isinstance(single, str) and not single.startswith(SOCIAL_THUMBNAIL):
        values.append(single)
    urls = [u for u in map(_optional_url, values) if u]
    return tuple(dict.fromkeys(urls))[:MAX_MEDIA]


def _json(payload: str | bytes, source: str, what: str = "not JSON") -> Any:
    """``json.loads`` with a byte-order mark allowed and every failure (including nesting too deep for
    the parser) as ``ListingFormatError``."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8-sig", errors="replace")
    try:
        return json.loads(payload.removeprefix(_BOM))
    except json.JSONDecodeError as e:
        raise ListingFormatError(f"{source}: {what} ({e})") from e
    except RecursionError:
        raise ListingFormatError(f"{source}: JSON nested too deeply to be a listing") from None


def parse_item(item: Any, where: str, fallback_date: date | None) -> Paper:
    """One listing item (``{"paper": {...}, "numComments": ..., ...}``) -> ``Paper``."""
    if not isinstance(item, dict):
        raise ListingFormatError(f"{where}: expected an object, got {type(item).__name__}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ListingFormatError(f"{where}: missing 'paper' object")
    raw_id = _required_text(paper, "id", where)
    if len(raw_id) > MAX_ID_CHARS:
        raise ListingFormatError(f"{where}: 'id' longer than {MAX_ID_CHARS} characters: {raw_id[:40]!r}...")
    arxiv_id = normalise_arxiv_id(raw_id)
    where = f"{where} (paper {arxiv_id})"
    title = bounded(_required_text(paper, "title", where), MAX_TITLE_CHARS)
    abstract = bounded(_required_text(paper, "summary", where), MAX_ABSTRACT_CHARS)

    authors_raw = paper.get("authors", [])
    if not isinstance(authors_raw, list):
        raise ListingFormatError(f"{where}: 'authors' is not a list")
    authors = tuple(
        bounded(a["name"], MAX_NAME_CHARS)
        for a in authors_raw[:MAX_AUTHORS] if isinstance(a, dict) and isinstance(a.get("name"), str)
    )

    # The listing date is when the paper was put on the daily list, not when arXiv published it.
    listed = _parse_datetime(paper.get("submittedOnDailyAt")) or _parse_datetime(item.get("publishedAt"))
    listing_date = listed.date() if listed else fallback_date
    if listing_date is None:
        raise ListingFormatError(f"{where}: no listing date (submittedOnDailyAt or publishedAt)")

    keywords = paper.get("ai_keywords")
    org = paper.get("organization") or item.get("organization")
    organization = org_name = None
    if isinstance(org, dict):
        organization = org.get("fullname") or org.get("name")
        org_name = org.get("name")
    ai_summary = paper.get("ai_summary")
    thumbnail = _optional_url(item.get("thumbnail"))
    if thumbnail is None and isinstance(item.get("mediaUrl"), str) and item["mediaUrl"].startswith(SOCIAL_THUMBNAIL):
        thumbnail = _optional_url(item["mediaUrl"])

    return Paper(
        arxiv_id=arxiv_id,
        title=title,
        abstract=abstract,
        authors=authors,
        listing_date=listing_date,
        published_at=_parse_datetime(paper.get("publishedAt")),
        upvotes=_count(paper, "upvotes", where),
        num_comments=_count(item, "numComments", where),
        ai_summary=bounded(ai_summary, MAX_SUMMARY_CHARS) if isinstance(ai_summary, str) and ai_summary.strip() else None,
        ai_keywords=tuple(
            bounded(k, MAX_KEYWORD_CHARS) for k in keywords[:MAX_KEYWORDS] if isinstance(k, str)
        ) if isinstance(keywords, list) else (),
        github_url=_optional_url(paper.get("githubRepo")),
        project_url=_optional_url(paper.get("projectPage")),
        thumbnail_url=thumbnail,
        organization=bounded(organization, MAX_NAME_CHARS) if isinstance(organization, str) else None,
        organization_name=_handle(org_name),
        github_stars=_optional_count(paper.get("githubStars")),
        media_urls=_media_urls(paper, item),
    )


def _papers_from_items(items: Any, source: str, fallback_date: date | None) -> dict[str, Paper]:
    if not isinstance(items, list):
        raise ListingFormatError(
            f"{source}: expected a JSON array of listing items, got {type(items).__name__}"
        )
    papers: dict[str, Paper] = {}
    for i, item in enumerate(items):
        p = parse_item(item, f"{source}: item {i}", fallback_date)
        papers.setdefault(p.arxiv_id, p)  # a listing names a paper once; keep the first if repeated
    return papers


def _main_date(papers: dict[str, Paper]) -> date:
    return Counter(p.listing_date for p in papers.values()).most_common(1)[0][0]


def _listing_from_items(items: Any, source: str, requested: date | None) -> Listing:
    papers = _papers_from_items(items, source, requested)
    if requested is not None:
        day = requested
    elif papers:
        day = _main_date(papers)
    else:
        raise ListingFormatError(f"{source}: empty listing and no date given to say which day it is")
    return Listing(listing_date=day, papers=tuple(papers.values()), source=source)


def parse_api(payload: str | bytes, source: str, requested: date | None = None) -> Listing:
    """The body of ``/api/daily_papers?date=D``: a bare JSON array."""
    return _listing_from_items(_json(payload, source), source, requested)


def _page_props(html: str | bytes, source: str) -> tuple[Any, date | None]:
    """The ``dailyPapers`` items of a page and the page's own date (when it says)."""
    if isinstance(html, bytes):
        html = html.decode("utf-8-sig", errors="replace")
    soup = BeautifulSoup(html.removeprefix(_BOM), "html.parser")
    div = soup.find(attrs={"data-target": HYDRATION_TARGET})
    if div is None:
        raise ListingFormatError(f"{source}: no element with data-target=\"{HYDRATION_TARGET}\"")
    raw = div.get("data-props")
    if not isinstance(raw, str):
        raise ListingFormatError(f"{source}: the {HYDRATION_TARGET} element has no data-props")
    props = _json(raw, source, "data-props is not JSON")
    if not isinstance(props, dict) or "dailyPapers" not in props:
        raise ListingFormatError(f"{source}: data-props has no 'dailyPapers'")
    # 2024 pages carry "date", 2025-2026 pages "dateString".
    stamp = _parse_datetime(props.get("date")) or _parse_datetime(props.get("dateString"))
    return props["dailyPapers"], stamp.date() if stamp else None


def parse_page(html: str | bytes, source: str, requested: date | None = None) -> Listing:
    """The HTML of ``/papers/date/D``: the items sit in the hydration div's ``data-props`` JSON."""
    items, own_date = _page_props(html, source)
    return _listing_from_items(items, source, requested or own_date)


def load_listing_file(path: str | Path, day: date | None = None) -> Listing:
    """A saved listing (API JSON or page HTML, a UTF-8 byte-order mark allowed), told apart by content.

    A listing with papers is the day of its papers' own listing dates: ``day``, when given, must be one
    of them (replayed under another date, its papers would be planned for a day they do not belong to,
    and that day's real digest blocked). An empty listing (``[]``, a weekend) is the day ``day``, else
    the page's own date, else a ``YYYY-MM-DD`` in the file name."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ListingFormatError(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a day's listing")
        data = path.read_bytes()
    except OSError as e:
        raise ListingFormatError(f"{path}: cannot read ({e.strerror})") from e
    source = str(path)
    head = data.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
    own_date: date | None = None
    if head in (b"[", b"{"):
        items = _json(data, source)
    elif head == b"<":
        items, own_date = _page_props(data, source)
    else:
        raise ListingFormatError(f"{path}: neither a JSON listing nor an HTML page")
    papers = _papers_from_items(items, source, day or own_date)
    if papers:
        dates = {p.listing_date for p in papers.values()}
        if day is not None and day not in dates:
            listed = ", ".join(sorted(d.isoformat() for d in dates))
            raise ListingFormatError(
                f"{path}: this is the listing of {listed}, not of {day.isoformat()}; "
                f"replay it with --date {_main_date(papers).isoformat()} or without --date"
            )
        return Listing(listing_date=day or _main_date(papers), papers=tuple(papers.values()), source=source)
    if day is None and own_date is None and (m := _FILE_DATE.search(path.name)):
        try:
            day = date.fromisoformat(m.group(1))
        except ValueError:
            day = None
    day = day or own_date
    if day is None:
        raise ListingFormatError(f"{path}: an empty listing names no day: give --date YYYY-MM-DD")
    return Listing(listing_date=day, papers=(), source=source)


# --------------------------------------------------------------------------------------------- fetching


class RetryableHTTPError(FetchError):
    """429, 5xx: worth another try, after ``retry_after`` seconds when the server said so."""

    def __init__(self, url: str, status: int, retry_after: float | None) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class HTTPStatusError(FetchError):
    """A 4xx answer other than 429 (not worth another try); ``status`` tells 404 from the rest."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.status = status


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def _wait_strategy(settings: Settings):  # type: ignore[no-untyped-def]
    backoff = wait_exponential_jitter(
        multiplier=settings.http_backoff_initial, max=settings.http_backoff_max, jitter=settings.http_backoff_initial
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableHTTPError) and exc.retry_after is not None:
            return exc.retry_after  # the server said how long: honour it exactly
        return backoff(state)

    return wait


def make_client(settings: Settings) -> httpx.Client:
    timeout = httpx.Timeout(settings.http_read_timeout, connect=settings.http_connect_timeout)
    return httpx.Client(
        base_url=settings.hf_base_url,
        timeout=timeout,
        headers={"User-Agent": settings.user_agent, "Accept": "application/json, text/html"},
        follow_redirects=True,
    )


def _name_not_resolved(exc: BaseException) -> bool:
    """Whether a connection error comes from DNS (``socket.gaierror`` somewhere in its chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful answer: where it came from (after redirects) and its body."""

    url: str
    content: bytes


def _read_bounded(response: httpx.Response, url: str, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ListingFormatError(f"{url}: answer of {declared} bytes, more than {limit} bytes: not a listing")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise ListingFormatError(f"{url}: answer larger than {limit} bytes: not a listing")
    return bytes(body)


def get_with_retries(client: httpx.Client, path: str, settings: Settings, **params: str) -> Fetched:
    """GET with retries on 429/5xx/connection errors, honouring ``Retry-After``, within a total time. A host
    name that does not resolve fails at once (``HostNotFoundError``); a body over
    ``settings.http_max_response_bytes`` is refused without being read whole."""
    url = f"{client.base_url}{path}"

    def once() -> Fetched:
        try:
            with client.stream("GET", path, params=params or None) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise RetryableHTTPError(
                        url, response.status_code, _retry_after_seconds(response.headers.get("Retry-After"))
                    )
                if response.status_code >= 400:
                    raise HTTPStatusError(url, response.status_code)
                return Fetched(str(response.url), _read_bounded(response, url, settings.http_max_response_bytes))
        except httpx.ConnectError as e:
            if _name_not_resolved(e):
                raise HostNotFoundError(
                    f"{url}: the host name does not resolve ({e}); check the network or DIGEST_HF_BASE_URL"
                ) from e
            raise

    retrying = Retrying(
        retry=retry_if_exception_type((RetryableHTTPError, httpx.TransportError)),
        wait=_wait_strategy(settings),
        stop=stop_after_attempt(settings.http_max_attempts) | stop_after_delay(settings.http_total_timeout),
        before_sleep=lambda s: log.warning(
            "GET %s failed (%s); retry %d", url, s.outcome.exception() if s.outcome else "?", s.attempt_number
        ),
        reraise=True,
    )
    try:
        return retrying(once)
    except httpx.TransportError as e:
        raise FetchError(f"{url}: {type(e).__name__}: {e}") from e


def api_path() -> str:
    return "/api/daily_papers"


def page_path(day: date) -> str:
    return f"/papers/date/{day.isoformat()}"


def _fetch_api(client: httpx.Client, day: date, settings: Settings) -> Listing:
    fetched = get_with_retries(client, api_path(), settings, date=day.isoformat())
    return parse_api(fetched.content, fetched.url, day)


def _fetch_page(client: httpx.Client, day: date, settings: Settings) -> Listing:
    fetched = get_with_retries(client, page_path(day), settings)
    return parse_page(fetched.content, fetched.url, day)


def _paths(settings: Settings) -> Iterator[tuple[str, Any]]:
    order = [("api", _fetch_api), ("page", _fetch_page)]
    if settings.hf_primary == "page":
        order.reverse()
    yield from order


def fetch_listing(day: date, settings: Settings, client: httpx.Client | None = None) -> Listing:
    """Fetch one day's listing: the primary path, then the fallback. Both failing raises the primary's
    error (with a note on the fallback's), so a bad listing stops the run loudly."""
    own = client is None
    client = client or make_client(settings)
    errors: list[Exception] = []
    try:
        for name, fetch in _paths(settings):
            try:
                listing = fetch(client, day, settings)
            except HostNotFoundError:
                raise  # the fallback is on the same host
            except (FetchError, ListingFormatError) as e:
                # INFO: if the fallback fails too, the error raised below says both; if it works, the
                # warning below does.
                log.info("%s path failed for %s: %s", name, day, e)
                errors.append(e)
                continue
            if errors:
                log.warning("fetched %s by the %s path; the other failed: %s", day, name, errors[0])
            return listing
    finally:
        if own:
            client.close()
    first = errors[0]
    for other in errors[1:]:
        first.add_note(f"fallback also failed: {type(other).__name__}: {other}")
    raise first


# --------------------------------------------------------------------------------------------- one paper


def paper_path(arxiv_id: str) -> str:
    return f"/api/papers/{arxiv_id}"


def parse_paper(obj: Any, source: str) -> Paper:
    """The body of ``/api/papers/{id}``: one paper object, the same fields as a listing item's ``paper``.
    Its listing date is the day HF listed it (``submittedOnDailyAt``), else its publication date."""
    published = _parse_datetime(obj.get("publishedAt")) if isinstance(obj, dict) else None
    return parse_item({"paper": obj}, source, published.date() if published else None)


def fetch_paper(arxiv_id: str, settings: Settings, client: httpx.Client | None = None) -> Paper | None:
    """One paper from the Hugging Face paper API (same client and retry policy as the listing); ``None``
    when HF answers 404 (no such paper)."""
    own = client is None
    client = client or make_client(settings)
    try:
        response = get_with_retries(client, paper_path(arxiv_id), settings)
    except HTTPStatusError as e:
        if e.status == 404:
            return None
        raise
    finally:
        if own:
            client.close()
    try:
        obj = json.loads(response.content)
    except json.JSONDecodeError as e:
        raise ListingFormatError(f"{response.url}: not JSON ({e})") from e
    return parse_paper(obj, str(response.url))


def search_papers(query: str, settings: Settings, client: httpx.Client | None = None) -> list[Paper]:
    """Papers HF finds for ``query`` (``/api/papers/search?q=``: a list of listing-like items)."""
    own = client is None
    client = client or make_client(settings)
    try:
        response = get_with_retries(client, "/api/papers/search", settings, q=query)
    finally:
        if own:
            client.close()
    try:
        items = json.loads(response.content)
    except json.JSONDecodeError as e:
        raise ListingFormatError(f"{response.url}: not JSON ({e})") from e
    if not isinstance(items, list):
        raise ListingFormatError(f"{response.url}: expected a JSON array of papers")
    out = []
    for i, item in enumerate(items):
        paper = item.get("paper") if isinstance(item, dict) else None
        published = _parse_datetime(paper.get("publishedAt")) if isinstance(paper, dict) else None
        out.append(parse_item(item, f"{response.url}: item {i}", published.date() if published else None))
    return out
