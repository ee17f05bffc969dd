"""Rendering the digest: escaping, layout essentials, the subject, the size guard."""

from __future__ import annotations

from digest.render import HTML_LIMIT, authors_line, reason_text, render_digest, trim

from .builders import HOSTILE_TITLE, make_context, paper

HOSTILE_AUTHOR = '<b onmouseover="alert(2)">Mallory</b>'


def test_ten_paper_digest_has_every_piece() -> None:
    papers = [paper(i) for i in range(10)]
    papers[0] = paper(0, ai_summary="An AI-written summary of the paper.")
    r = render_digest(make_context(papers))
    assert r.included == 10
    assert r.subject == "Daily Papers, 2026-08-18: Paper number 0: scaling things up"
    h = r.html
    assert len(h.encode()) < HTML_LIMIT
    assert "https://huggingface.co/papers/2408.00000" in h
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in h and "Dijkstra" not in h
    assert "Matches your interest “LLM reasoning”" in h
    assert "An AI-written summary of the paper." in h
    for link in ("https://arxiv.org/abs/2408.00003", "https://arxiv.org/pdf/2408.00003",
                 "https://github.com/example/repo3", "https://example.org/p3"):
        assert link in h and link in r.text
    assert h.count("/feedback/") == 20 and "v=up" in h and "v=down" in h
    assert "https://digest.example/unsubscribe/" in h and "https://digest.example/preferences/" in h
    assert "mailto:" not in h + r.text and "or email" not in h + r.text  # no mailbox reads it: not offered
    assert "Tuesday, 18 August 2026" in h and "10 papers" in h
    assert 'style="' in h and "<style>" not in h.split("</head>")[1]  # CSS inlined
    assert "bgcolor=" in h and "color: #111827" in h  # explicit colours
    # plain text: numbered, wrapped, one URL per line
    assert r.text.startswith("Daily Papers, Tuesday, 18 August 2026")
    assert "\n1. Paper number 0" in r.text and "\n10. Paper number 9" in r.text
    lines = r.text.splitlines()
    for line in lines:
        if "://" not in line:
            assert len(line) <= 72, line
    assert all(line.count("://") <= 1 for line in lines)


def test_hostile_strings_are_escaped() -> None:
    evil = paper(0, title=HOSTILE_TITLE, authors=(HOSTILE_AUTHOR,), abstract=HOSTILE_TITLE,
                 github_url="javascript:alert(3)", project_url="data:text/html,<script>x</script>")
    r = render_digest(make_context([evil, paper(1)]))
    h = r.html.lower()
    assert "<script" not in h and "<img" not in h and "<b onmouseover" not in h
    assert "javascript:" not in h and "data:text" not in h
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.html
    # Jinja's autoescape writes every quote as &#34; (the CSS is inlined into the template, not the mail)
    assert '&#34;&gt;&lt;img src=x onerror=alert(1)&gt;' in r.html
    assert "&lt;b onmouseover=" in r.html


def test_subject_is_one_line_and_trimmed() -> None:
    r = render_digest(make_context([paper(0, title="Line one\r\nBcc: victim@example.org\nmore " + "x" * 300)]))
    assert "\r" not in r.subject and "\n" not in r.subject
    assert len(r.subject) <= 120 and r.subject.endswith("…")
    assert r.subject.startswith("Daily Papers, 2026-08-18: Line one Bcc: victim@example.org more")


def test_abstract_trimmed_at_word_boundary() -> None:
    assert trim("alpha beta gamma delta", 12) == "alpha beta…"
    assert trim("short", 400) == "short"
    r = render_digest(make_context([paper(0, abstract="word " * 300)]))
    assert "word word…" in r.html and ("word " * 90) not in r.html


def test_size_guard_drops_lowest_ranked_papers() -> None:
    papers = [paper(i, abstract=LONG, title=f"A long title for paper {i} " * 3) for i in range(60)]
    r = render_digest(make_context(papers))
    assert len(r.html.encode()) < HTML_LIMIT
    assert 0 < r.included < 60
    dropped = 60 - r.included
    assert f"{dropped} more papers" in r.html and f"{dropped} more papers" in r.text
    assert "https://huggingface.co/papers/date/2026-08-18" in r.html
    assert "2408.00000" in r.html and f"2408.{r.included - 1:05d}" in r.html
    assert f"/papers/2408.{r.included:05d}\"" not in r.html  # the next-ranked one was dropped


def test_empty_digest_and_helpers() -> None:
    r = render_digest(make_context([]))
    assert r.included == 0 and r.subject == "Daily Papers, 2026-08-18"
    assert authors_line(["A", "B"]) == "A, B"
    assert reason_text("seed paper: 2401.1") == "Similar to a paper you follow (arXiv 2401.1)"
    assert reason_text("trending") == "Trending today"


LONG = ("This abstract is deliberately long to push the email over the size limit. " * 40).strip()
