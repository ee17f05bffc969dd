"""What the send path's speed-ups in the renderer must not change: the stylesheet inlined once into the
HTML template gives the same mail as inlining every rendered mail, and the caches give the same text."""

from __future__ import annotations

from html.parser import HTMLParser

import css_inline
import pytest
from jinja2 import Environment

from digest.models import Subscriber
from digest.render import (
    SHORT_SUMMARY_CHARS,
    SUMMARY_CHARS,
    _vars,
    _wrap,
    environment,
    preinline,
    render_digest,
    template_loader,
)

from .builders import HOSTILE_TITLE, LINK_KEY, LOREM, make_context, paper


def per_mail_environment() -> Environment:
    """The email templates as they are on disk, to be inlined after each render (the old way)."""
    env = Environment(loader=template_loader("email"), autoescape=lambda n: bool(n) and n.endswith(".html.j2"),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["wrap"] = _wrap
    return env


class _Tokens(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[object, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(("start", tag, tuple(sorted(attrs))))

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.tokens and self.tokens[-1][0] == "data":
            data = str(self.tokens.pop()[1]) + data
        self.tokens.append(("data", data))


def same_document(html: str) -> list[tuple[object, ...]]:
    """``html`` as a list of tags (attributes sorted) and texts (entities decoded): what a mail client
    sees, whatever the spelling of entities or the order of attributes."""
    parser = _Tokens()
    parser.feed(html)
    parser.close()
    return parser.tokens


CASES = {
    "ten papers": [paper(i) for i in range(10)],
    "hostile": [paper(0, title=HOSTILE_TITLE, authors=('<b onmouseover="x">M</b>',), abstract=HOSTILE_TITLE,
                      ai_summary="an <i>AI</i> summary & more"), paper(1)],
    "no papers": [],
    "long": [paper(i, abstract=LOREM * 40, github_url=None) for i in range(40)],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("summary_chars", [SUMMARY_CHARS, SHORT_SUMMARY_CHARS])
def test_the_stylesheet_inlined_once_gives_the_same_mail(case: str, summary_chars: int) -> None:
    ctx = make_context(CASES[case], Subscriber(email="ada@example.org", name='Ada "<A>" Lovelace', id=7, link_key=LINK_KEY))
    vars_ = _vars(ctx, ctx.items[:30], summary_chars)
    once = environment().get_template("digest.html.j2").render(vars_)
    each = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False).inline(
        per_mail_environment().get_template("digest.html.j2").render(vars_))
    assert 'class="card"' not in once or 'style="padding: 16px 24px' in once, "the cards are styled"
    assert "<style" in once and "@media" in once, "the mobile rule stays in a <style>"
    assert same_document(once) == same_document(each)


def test_render_digest_uses_the_inlined_template() -> None:
    html = render_digest(make_context([paper(i) for i in range(3)])).html
    assert 'style="font-size: 17px;line-height: 23px;font-weight: bold;margin: 0;color: #111827;"' in html
    assert ".card {" not in html, "only the @media rule is left in <style>"


def test_a_template_the_round_trip_would_reorder_is_inlined_per_mail() -> None:
    source = ('<html><head><style>.a { color: red; }</style></head><body><table><tr><td class="a">{{ a }}</td>'
              '</tr>{{ b }}</table></body></html>')  # b's text would be moved before the table
    assert preinline(source, lambda name: "") is None
    ok = '<html><head><style>.a { color: red; }</style></head><body><p class="a">{{ a }}{% if b %}!{% endif %}</p></body></html>'
    done = preinline(ok, lambda name: "")
    assert done is not None and '<p class="a" style="color: red;">{{ a }}{% if b %}!{% endif %}</p>' in done


def test_wrap_cache_gives_what_textwrap_would() -> None:
    import textwrap

    text = LOREM * 3
    for width, indent in ((72, ""), (72, "   "), (40, "  ")):
        expected = textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                                 break_long_words=False, break_on_hyphens=False)
        assert _wrap(text, width, indent) == expected == _wrap(text, width, indent)
