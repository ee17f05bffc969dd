"""Rendering the digest email: Jinja templates (HTML + plain text), CSS inlining, the size guard.

Every string that comes from a listing is autoescaped in the HTML templates and is never marked safe;
links taken from a listing are kept only when they are http(s). The HTML part is kept under
``HTML_LIMIT`` bytes (Gmail clips messages at ~102 KB): abstracts are shortened first, then the
lowest-ranked papers are replaced by an "N more papers" line.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import css_inline
from jinja2 import BaseLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from digest.models import Paper, Pick, Subscriber
from digest.text import has_control, one_line, trim

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.signing import LinkSigner

HTML_LIMIT = 100_000  # bytes of UTF-8 HTML (after inlining)
SUMMARY_CHARS = 400  # abstract trimmed to this when there is no AI summary
SHORT_SUMMARY_CHARS = 160  # first step of the size guard
SUBJECT_CHARS = 120
TEXT_WIDTH = 72
# HF's social thumbnail of a paper (``Paper.thumbnail_url``): every one is generated at this size, so a mail can
# give each <img> its width and height (no layout jump, and Outlook sizes by the attributes).
THUMBNAIL_SIZE = (1200, 648)
THUMBNAIL_WIDTH = 552  # the card's width in the 600-pixel mail (24 px padding each side)
_REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class DigestItem:
    paper: Paper
    pick: Pick
    feedback_up_url: str
    feedback_down_url: str


@dataclass(frozen=True)
class DigestContext:
    subscriber: Subscriber
    digest_date: date
    items: tuple[DigestItem, ...]
    unsubscribe_url: str
    preferences_url: str
    hf_base_url: str = "https://huggingface.co"
    more_url: str | None = None
    view_url: str | None = None  # this digest's web page ("View in browser")
    archive_url: str | None = None  # the subscriber's past digests


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    included: int  # papers actually in the mail after the size guard


# -- Jinja environment -------------------------------------------------------------------------------


def template_loader(folder: str) -> BaseLoader:
    """The loader of ``templates/<folder>`` ("email" or "pages"): the source checkout's folder (editable
    install), else the copy shipped in the wheel as ``digest/templates/<folder>``."""
    if (_REPO_TEMPLATES / folder).is_dir():
        return FileSystemLoader(str(_REPO_TEMPLATES / folder))
    return PackageLoader("digest", f"templates/{folder}")


@lru_cache(maxsize=16)
def _wrap_pattern(width: int) -> re.Pattern[str]:
    # a line is the longest run of at most `width` characters ending at a space or the end; a word
    # longer than the line (a URL) becomes a line of its own, never broken
    return re.compile(rf"(\S.{{0,{max(width - 1, 0)}}})(?: |$)|(\S+)(?: |$)")


@lru_cache(maxsize=8192)
def _wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """Word wrap like ``textwrap.fill(break_long_words=False, break_on_hyphens=False)`` for one
    paragraph, done by one compiled regex (~10x cheaper than textwrap). Cached: a day's summaries and
    titles come back in mail after mail."""
    text = " ".join(text.split())
    pattern = _wrap_pattern(width - len(indent))
    return "\n".join(indent + (m.group(1) or m.group(2)) for m in pattern.finditer(text))


# -- the stylesheet, inlined once per template --------------------------------------------------------

_JINJA_TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
_INCLUDE = re.compile(r"""\{%\s*include\s+["']([\w./-]+)["']\s*%\}\n?""")
_STYLE = re.compile(r"<style\b", re.I)
_preinlined: set[str] = set()  # HTML templates served with their stylesheet already inlined


def preinline(source: str, include: Callable[[str], str]) -> str | None:
    """The template ``source`` with its static ``{% include "x" %}`` expanded (``include(name)`` gives a
    template's source) and its ``<style>`` inlined into ``style`` attributes, as css-inline would do on
    each rendered mail, done once. Jinja tags are hidden behind placeholders (comments for statements,
    words for expressions) during the round trip; ``None`` when they do not all come back, once each and
    in order (the caller then inlines every rendered mail instead).

    Valid for stylesheets whose selectors do not depend on what loops and conditions render (class,
    type and descendant selectors, as in templates/email); tests/test_render_speed.py checks the result
    against inlining each rendered mail."""
    for _ in range(8):  # nested includes; the newline after the tag is what trim_blocks would remove
        expanded = _INCLUDE.sub(lambda m: include(m.group(1)), source)
        if expanded == source:
            break
        source = expanded
    else:
        return None
    nonce = secrets.token_hex(4)
    tags: list[str] = []

    def hide(m: re.Match[str]) -> str:
        tags.append(m.group(0))
        i = len(tags) - 1
        return f"<!--j{nonce}s{i}x-->" if m.group(0).startswith(("{%", "{#")) else f"j{nonce}e{i}x"

    inlined = _inliner().inline(_JINJA_TAG.sub(hide, source))
    back = re.compile(rf"<!--j{nonce}s(\d+)x-->|j{nonce}e(\d+)x")
    order = [int(m.group(1) or m.group(2)) for m in back.finditer(inlined)]
    if order != list(range(len(tags))):
        return None
    return back.sub(lambda m: tags[int(m.group(1) or m.group(2))], inlined)


class _InlinedCss(BaseLoader):
    """Serves the HTML email templates with their stylesheet already inlined (``preinline``); any other
    template, or one whose round trip fails, as it is."""

    def __init__(self, base: BaseLoader) -> None:
        self.base = base

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self.base.get_source(environment, template)
        if template.endswith(".html.j2") and _STYLE.search(source):
            inlined = preinline(source, lambda name: self.base.get_source(environment, name)[0])
            if inlined is not None:
                _preinlined.add(template)
                return inlined, filename, uptodate
            _preinlined.discard(template)
        return source, filename, uptodate

    def list_templates(self) -> list[str]:
        return self.base.list_templates()


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja environment of the email templates (``templates/email``); the HTML ones come with their
    CSS already inlined."""
    env = Environment(
        loader=_InlinedCss(template_loader("email")),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["wrap"] = _wrap
    return env


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # keep_at_rules keeps the @media block (mobile widths) in a <style> tag; everything else is inlined.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


# -- view helpers ------------------------------------------------------------------------------------


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL without whitespace or control characters, else None."""
    if not url:
        return None
    url = url.strip()
    if has_control(url) or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def authors_line(authors: Sequence[str]) -> str:
    names = [n for n in (one_line(a) for a in authors) if n]
    if len(names) > 3:
        return ", ".join(names[:3]) + " et al."
    return ", ".join(names)


@lru_cache(maxsize=4096)
def reason_text(reason: str) -> str:
    """``Pick.reason`` ("interest: x", "seed paper: id", "liked: id", "trending", "rising: +N upvotes since T",
    "closest: <one of these>") for a human."""
    line = one_line(reason)
    if line.endswith((", which you follow", ", whom you follow")) and line.startswith(("from ", "by ")):
        return line[:1].upper() + line[1:]  # digest.rank's follow reasons: "From NVIDIA, which you follow"
    kind, _, value = line.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if kind == "interest" and value:
        return f"Matches your interest “{value}”"
    if kind == "seed paper" and value:
        return f"Similar to a paper you follow (arXiv {value})"
    if kind == "liked" and value:
        return f"Similar to a paper you liked (arXiv {value})"
    if kind == "trending":
        return "Trending today"
    if kind == "rising" and value:
        return f"Rising fast: {value}"
    if kind == "closest" and value:
        inner = reason_text(value)
        if inner.startswith("Matches your interest"):
            return inner.replace("Matches your interest", "Closest to your interest", 1) + " (few close matches today)"
        if inner.endswith(")"):
            return inner.replace("Similar to", "Closest to", 1)[:-1] + "; few close matches today)"
        return f"{inner} (few close matches today)"
    return one_line(reason) or "Picked for you"


def make_subject(digest_date: date, top_title: str | None, weekly: bool = False) -> str:
    base = f"Daily Papers, {'week to ' if weekly else ''}{digest_date.isoformat()}"
    subject = f"{base}: {one_line(top_title)}" if one_line(top_title) else base
    return trim(subject, SUBJECT_CHARS)


def _listing_url(ctx: DigestContext) -> str:
    return safe_url(ctx.more_url) or f"{ctx.hf_base_url.rstrip('/')}/papers/date/{ctx.digest_date.isoformat()}"


def stars_label(stars: int | None) -> str:
    """GitHub stars as a badge says them: ``"★ 24"``, ``"★ 1.2k"``, ``"★ 25k"``; ``""`` when unknown."""
    if stars is None or stars < 0:
        return ""
    if stars < 1000:
        return f"\u2605 {stars}"
    if stars < 10_000:
        return f"\u2605 {stars / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    if stars < 1_000_000:
        return f"\u2605 {stars // 1000}k"
    return f"\u2605 {stars / 1_000_000:.1f}".rstrip("0").rstrip(".") + "M"


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """An <img> of a card: its http(s) URL, the size it is shown at, and its alt text."""

    src: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True, slots=True)
class PaperView:
    """What every page, mail and feed shows of a paper, whoever gets it (cleaned, not escaped)."""

    title: str
    url: str  # the paper's Hugging Face page
    authors: str
    upvotes: int
    summary: str
    summary_is_ai: bool
    links: list[tuple[str, str]]  # (label, http(s) URL): arXiv, PDF
    code_url: str | None = None  # the badges: a code repository (and its stars), a project page
    stars: str = ""  # "★ 24" (stars_label), "" when unknown
    project_url: str | None = None
    organization: str = ""  # the lab that submitted it
    thumbnail: Thumbnail | None = None  # HF's social thumbnail at THUMBNAIL_WIDTH (shown where wanted)


@lru_cache(maxsize=2048)
def _paper_view(p: Paper, hf_base_url: str, summary_chars: int) -> PaperView:
    """What a card shows of a paper whoever gets it. Cached: a day's papers come back in mail after mail."""
    aid = quote(one_line(p.arxiv_id), safe="./")
    links = [("arXiv", f"https://arxiv.org/abs/{aid}"), ("PDF", f"https://arxiv.org/pdf/{aid}")]
    summary = one_line(p.ai_summary) or one_line(p.abstract)
    title = one_line(p.title) or one_line(p.arxiv_id)
    code = safe_url(p.github_url)
    thumb = safe_url(p.thumbnail_url)
    width, height = THUMBNAIL_SIZE
    return PaperView(
        title=title,
        url=f"{hf_base_url.rstrip('/')}/papers/{aid}",
        authors=authors_line(p.authors),
        upvotes=max(int(p.upvotes), 0),
        summary=trim(summary, summary_chars) if summary_chars > 0 else "",
        summary_is_ai=bool(one_line(p.ai_summary)),
        links=links,
        code_url=code,
        stars=stars_label(p.github_stars) if code else "",
        project_url=safe_url(p.project_url),
        organization=one_line(p.organization),
        thumbnail=Thumbnail(thumb, THUMBNAIL_WIDTH, round(THUMBNAIL_WIDTH * height / width),
                            f"Thumbnail of the paper \u201c{trim(title, 150)}\u201d") if thumb else None,
    )


def paper_view(p: Paper, hf_base_url: str, summary_chars: int = SUMMARY_CHARS) -> PaperView:
    return _paper_view(p, hf_base_url, summary_chars)


@dataclass(frozen=True, slots=True)
class _Card:
    """What the paper partials see (attributes, not dict keys: cheaper attribute lookups in Jinja): the
    paper's view and what is this subscriber's (rank, reason, evidence, feedback links, thumbnail wanted)."""

    n: int
    rank: int
    view: PaperView
    reason: str
    evidence: str  # the abstract's sentence matching the deciding interest (digest.explain), "" when none
    more_url: str
    less_url: str
    thumbnail: Thumbnail | None  # the view's, when the subscriber wants thumbnails

    # the view's fields, as the templates name them
    title = property(lambda self: self.view.title)
    url = property(lambda self: self.view.url)
    authors = property(lambda self: self.view.authors)
    upvotes = property(lambda self: self.view.upvotes)
    summary = property(lambda self: self.view.summary)
    summary_is_ai = property(lambda self: self.view.summary_is_ai)
    links = property(lambda self: self.view.links)
    code_url = property(lambda self: self.view.code_url)
    stars = property(lambda self: self.view.stars)
    project_url = property(lambda self: self.view.project_url)
    organization = property(lambda self: self.view.organization)


def _card(n: int, item: DigestItem, hf_base_url: str, summary_chars: int, thumbnails: bool) -> _Card:
    view = _paper_view(item.paper, hf_base_url, summary_chars)
    return _Card(
        n=n,
        rank=item.pick.rank,
        view=view,
        reason=reason_text(item.pick.reason),
        evidence=one_line(item.pick.evidence),
        more_url=item.feedback_up_url,
        less_url=item.feedback_down_url,
        thumbnail=view.thumbnail if thumbnails else None,
    )


def _vars(ctx: DigestContext, items: Sequence[DigestItem], summary_chars: int) -> dict[str, Any]:
    """The template variables: plain, already-cleaned strings (escaping is the template's job)."""
    thumbnails = ctx.subscriber.thumbnails
    cards = [_card(n, i, ctx.hf_base_url, summary_chars, thumbnails) for n, i in enumerate(items, 1)]
    weekly = ctx.subscriber.frequency == "weekly"  # a week's papers: said in the heading and the empty line
    return {
        "date_iso": ctx.digest_date.isoformat(),
        "date_long": f"{'week to ' if weekly else ''}{ctx.digest_date:%A}, {ctx.digest_date.day} "
                     f"{ctx.digest_date:%B %Y}",
        "period": "this week" if weekly else "today",
        "count": len(cards),
        "cards": cards,
        "dropped": len(ctx.items) - len(items),
        "more_url": _listing_url(ctx),
        "email": one_line(ctx.subscriber.email),
        "name": one_line(ctx.subscriber.name),
        "unsubscribe_url": ctx.unsubscribe_url,
        "preferences_url": ctx.preferences_url,
        "view_url": ctx.view_url,
        "archive_url": ctx.archive_url,
        "preheader": cards[0].title if cards else f"No new papers matched your interests {'this week' if weekly else 'today'}.",
    }


def _render(ctx: DigestContext, items: Sequence[DigestItem], summary_chars: int) -> tuple[str, str]:
    """HTML and text of the digest; a plain-text-only subscriber's HTML is not rendered at all ("")."""
    env = environment()
    vars_ = _vars(ctx, items, summary_chars)
    text = env.get_template("digest.txt.j2").render(vars_)
    if ctx.subscriber.plain_text:
        return "", text
    html = env.get_template("digest.html.j2").render(vars_)
    if "digest.html.j2" not in _preinlined:
        html = _inliner().inline(html)
    return html, text


def _size(html: str) -> int:
    return len(html.encode("utf-8"))


def render_digest(ctx: DigestContext, *, html_limit: int = HTML_LIMIT) -> RenderedEmail:
    """Subject, inlined HTML and plain text of one digest; the HTML stays under ``html_limit`` bytes (for a
    subscriber who wants plain text only, ``html`` is "" and the text stays under it: Gmail clips any
    message body beyond ~102 KB)."""
    items = tuple(sorted(ctx.items, key=lambda i: i.pick.rank))
    top = items[0].paper.title if items else None
    subject = make_subject(ctx.digest_date, top, ctx.subscriber.frequency == "weekly")
    part = 1 if ctx.subscriber.plain_text else 0  # the part the guard measures
    rendered = _render(ctx, items, SUMMARY_CHARS)
    if _size(rendered[part]) <= html_limit:
        return RenderedEmail(subject, *rendered, len(items))
    # 1. shorter abstracts
    rendered = _render(ctx, items, SHORT_SUMMARY_CHARS)
    # 2. drop the lowest-ranked papers: estimate from the mean card size, then adjust
    keep = len(items)
    while _size(rendered[part]) > html_limit and keep > 0:
        size = _size(rendered[part])
        per_card = max((size - _size(_render(ctx, (), 0)[part])) / max(keep, 1), 1.0)
        over = size - html_limit
        keep = max(min(keep - 1, keep - int(over / per_card) - 1), 0)
        rendered = _render(ctx, items[:keep], SHORT_SUMMARY_CHARS)
    return RenderedEmail(subject, *rendered, keep)


def digest_page_vars(ctx: DigestContext) -> dict[str, Any]:
    """The mail's template variables for the web page of a digest: the same cards (papers, order, reasons,
    feedback links), every item of the digest (a page has no size limit)."""
    return _vars(ctx, tuple(sorted(ctx.items, key=lambda i: i.pick.rank)), SUMMARY_CHARS)


def render_confirmation(email: str, confirm_url: str, home_url: str, valid_days: int) -> RenderedEmail:
    """The double opt-in mail (``templates/email/confirm.*``): subject, HTML and plain text."""
    env = environment()
    ctx = {"email": one_line(email), "confirm_url": confirm_url, "home_url": home_url, "days": valid_days}
    return RenderedEmail(
        subject="Confirm your Papers Digest subscription",
        html=env.get_template("confirm.html.j2").render(ctx),
        text=env.get_template("confirm.txt.j2").render(ctx),
        included=0,
    )


# -- context -----------------------------------------------------------------------------------------


def build_context(
    subscriber: Subscriber,
    digest_date: date,
    papers_and_picks: Sequence[tuple[Paper, Pick]],
    settings: Settings,
    signer: LinkSigner,
) -> DigestContext:
    """The digest of ``subscriber`` for ``digest_date`` with every signed link built (ordered by rank)."""
    if subscriber.id is None or subscriber.link_key is None:
        raise ValueError("subscriber has no id or link key: store it before building its digest")
    ordered = sorted(papers_and_picks, key=lambda pp: pp[1].rank)
    links = signer.digest_links(subscriber.id, digest_date, [paper.arxiv_id for paper, _ in ordered],
                                key=subscriber.link_key)
    items = tuple(
        DigestItem(paper=paper, pick=pick, feedback_up_url=up, feedback_down_url=down)
        for (paper, pick), (up, down) in zip(ordered, links.feedback)
    )
    return DigestContext(
        subscriber=subscriber,
        digest_date=digest_date,
        items=items,
        unsubscribe_url=links.unsubscribe,
        preferences_url=links.preferences,
        hf_base_url=settings.hf_base_url,
        view_url=links.view,
        archive_url=links.archive,
    )


__all__ = [
    "THUMBNAIL_SIZE", "Thumbnail", "stars_label",
    "DigestContext", "DigestItem", "RenderedEmail", "build_context", "render_confirmation", "render_digest",
    "environment", "template_loader", "HTML_LIMIT", "PaperView", "digest_page_vars", "paper_view",
]
