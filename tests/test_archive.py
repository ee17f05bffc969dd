"""The web archive (issue 15): every digest mail links to a signed page of that digest ("View in browser") and
to the subscriber's archive of past digests; the pages over HTTP on a real SQLite (and PostgreSQL) store."""

from __future__ import annotations

import re

import pytest

from digest.render import render_digest
from digest.signing import LinkSigner
from digest.web.logs import redact

from .builders import DAY, LINK_KEY, SECRET, make_context, paper

TOKEN_URL = r"https://digest\.example/{}/[A-Za-z0-9_-]+"


# -- the mail ------------------------------------------------------------------------------------------


def test_the_mail_links_to_its_page_and_the_archive_in_both_parts() -> None:
    r = render_digest(make_context([paper(0), paper(1)]))
    signer = LinkSigner(SECRET, "https://digest.example")
    for kind, purpose in (("d", "view"), ("archive", "archive")):
        found = re.findall(TOKEN_URL.format(kind), r.text)
        assert len(found) == 1, (kind, r.text)
        assert found[0] in r.html, kind  # the same link in the HTML part
        data = signer.verify(purpose, found[0].rsplit("/", 1)[1])
        assert (data["subscriber_id"], data["key"]) == (7, LINK_KEY)
        if purpose == "view":
            assert data["d"] == DAY.isoformat()  # the page of this digest
    assert "View in browser" in r.html and "View in your browser" in r.text
    # at the top, before the first card (the preheader, hidden, comes first)
    assert r.html.index("View in browser") < r.html.index(">Paper number 0: scaling things up</a>")
    assert r.text.index("View in your browser") < r.text.index("1. Paper number 0")
    assert "Past digests" in r.html and "Past digests" in r.text
    for line in r.text.splitlines():  # one URL per line, as every other link of the text part
        assert line.count("://") <= 1, line


def test_papers_the_size_guard_left_out_are_on_the_page() -> None:
    long = "This abstract is deliberately long to push the email over the size limit. " * 40
    r = render_digest(make_context([paper(i, abstract=long, title=f"A long title for paper {i} " * 3)
                                    for i in range(60)]))
    assert 0 < r.included < 60
    view = re.findall(TOKEN_URL.format("d"), r.text)[0]
    more = r.text.split("did not fit in this email", 1)[1]
    assert "Read them in your browser:\n" + view in more  # the page shows every pick, the mail only some
    assert r.html.count(f'href="{view}"') == 2  # at the top, and on the "did not fit" line


def test_the_new_token_paths_are_kept_out_of_logs() -> None:
    assert redact("GET /d/abc_-1 HTTP/1.1") == "GET /d/<token> HTTP/1.1"
    assert redact("GET /archive/abc?page=2 HTTP/1.1") == "GET /archive/<token>?page=2 HTTP/1.1"
    assert redact("GET /feed/abc-_x.atom HTTP/1.1") == "GET /feed/<token> HTTP/1.1"
    assert redact("POST /preferences/abc/feed HTTP/1.1") == "POST /preferences/<token>/feed HTTP/1.1"
    assert redact("GET /day/2026-08-18.atom HTTP/1.1") == "GET /day/2026-08-18.atom HTTP/1.1"  # public
