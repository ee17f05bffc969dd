"""How the digest looks, without the model: badges, the lab, the sentence beside an interest, thumbnails where
the subscriber wants them, dark-mode styles that survive CSS inlining, plain text only (rendered, and as the
SMTP test server receives it), the size guard with all of that, and the two preferences in the CLI and on
the preferences page."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from email import message_from_bytes, policy

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings
from digest.explain import deciding_interest, quote, split_sentences
from digest.models import Subscriber
from digest.render import HTML_LIMIT, render_digest, stars_label
from digest.send import send_day
from digest.signing import LinkSigner
from digest.store import outbox, session_factory
from digest.store.subscribers import edit_subscriber
from digest.web import create_app

from .builders import (
    HOSTILE_TITLE, LINK_KEY, LOREM, add_reader, link_key, make_context, paper, pick, readers_with_picks, smtp_settings,
    subscriber_row,
)
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.all_backends

THUMB = "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2408.00000.png"
LISTED = date(2025, 6, 5)  # the day of the listing readers_with_picks stores
SENTENCE = "We propose a retrieval-augmented method that improves accuracy on multi-hop question answering."


def ada(**changes: object) -> Subscriber:
    return dataclasses.replace(Subscriber(email="ada@example.org", name="Ada", id=7, link_key=LINK_KEY), **changes)


def with_evidence(ctx, evidence: dict[int, str | None]):  # type: ignore[no-untyped-def]
    items = tuple(dataclasses.replace(it, pick=dataclasses.replace(it.pick, evidence=evidence.get(n)))
                  for n, it in enumerate(ctx.items))
    return dataclasses.replace(ctx, items=items)


# -- the rendered mail ------------------------------------------------------------------------------------


def test_badges_lab_and_no_code() -> None:
    papers = [paper(0, github_stars=1234, organization="NVIDIA"), paper(1, github_url=None, project_url=None),
              paper(2, github_stars=None), paper(3, github_url=None)]
    r = render_digest(make_context(papers))
    assert re.search(r'<a class="badge" href="https://github.com/example/repo0"[^>]*>Code · ★ 1.2k</a>', r.html)
    assert "Code (★ 1.2k): https://github.com/example/repo0" in r.text
    assert "Code: https://github.com/example/repo2" in r.text  # code, stars unknown
    assert r.html.count("No code linked") == 2 and r.text.count("No code linked") == 2
    assert "Project page: https://example.org/p3" in r.text and 'href="https://example.org/p3"' in r.html
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al. · NVIDIA" in r.html
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al. · NVIDIA" in r.text
    assert [stars_label(n) for n in (None, 7, 999, 1000, 25_400, 2_500_000)] == [
        "", "★ 7", "★ 999", "★ 1k", "★ 25k", "★ 2.5M"]


def test_the_sentence_sits_under_the_reason_escaped_in_both_parts() -> None:
    ctx = with_evidence(make_context([paper(0), paper(1), paper(2)]),
                        {0: SENTENCE, 2: HOSTILE_TITLE})
    r = render_digest(ctx)
    why = "Matches your interest “LLM reasoning”"
    assert re.search(rf'{why} · ▲ 100 upvotes</p>\s*<p class="ev"[^>]*>“{re.escape(SENTENCE)}”</p>', r.html)
    assert r.html.count('class="ev"') == 2  # paper 1 has none
    assert "<script" not in r.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.html
    lines = r.text.splitlines()
    i = lines.index(f"   {why} · 100 upvotes")
    assert lines[i + 1].startswith("   “We propose a retrieval-augmented") and all(
        len(line) <= 72 for line in lines[i + 1 : i + 3])


def test_thumbnails_only_where_wanted_with_size_and_alt() -> None:
    papers = [paper(0, thumbnail_url=THUMB, title='A "quoted" <title>'), paper(1)]
    off = render_digest(make_context(papers))
    assert "<img" not in off.html and THUMB not in off.html + off.text
    on = render_digest(make_context(papers, ada(thumbnails=True)))
    (img,) = re.findall(r"<img [^>]*>", on.html)
    assert f'src="{THUMB}"' in img and 'width="552"' in img and 'height="298"' in img  # 1200 x 648 scaled
    assert 'alt="Thumbnail of the paper “A &#34;quoted&#34; &lt;title&gt;”"' in img
    assert "height: auto" in img and "max-width: 552px" in img  # inlined: the aspect ratio holds when narrower
    assert THUMB not in on.text
    hostile = render_digest(make_context([paper(0, thumbnail_url="javascript:alert(1)")], ada(thumbnails=True)))
    assert "<img" not in hostile.html and "javascript:" not in hostile.html


def test_dark_mode_styles_survive_inlining() -> None:
    html = render_digest(make_context([paper(0), paper(1)])).html
    head, body = html.split("</head>")
    assert '<meta name="color-scheme" content="light dark">' in head
    assert '<meta name="supported-color-schemes" content="light dark">' in head
    style = head[head.index("<style"):]
    assert "@media (prefers-color-scheme: dark)" in style and "@media only screen and (max-width: 620px)" in style
    dark = style[style.index("prefers-color-scheme"):]
    for rule in (".card", ".title a", ".ev", ".badge", ".ft"):
        assert rule in dark
    assert dark.count("!important") >= 12  # they must beat the inlined light colours
    assert ".card {" not in style  # everything else is inlined
    assert 'class="card" style="padding: 16px 24px;' in body and "<style" not in body


def test_plain_text_only_renders_no_html() -> None:
    ctx = with_evidence(make_context([paper(i) for i in range(3)], ada(plain_text=True, thumbnails=True)), {0: SENTENCE})
    r = render_digest(ctx)
    assert r.html == "" and r.included == 3
    assert "1. Paper number 0" in r.text and f"“{SENTENCE[:40]}" in r.text


def test_twelve_papers_with_thumbnails_and_sentences_stay_under_the_guard() -> None:
    long_sentence = quote(LOREM * 3)  # as long as a quoted sentence gets (EVIDENCE_CHARS)
    papers = [paper(i, thumbnail_url=THUMB.replace("00000", f"{i:05d}"), ai_summary=LOREM * 2, github_stars=100 + i,
                    organization="A Lab With A Long Name") for i in range(12)]
    ctx = with_evidence(make_context(papers, ada(thumbnails=True)), {n: long_sentence for n in range(12)})
    r = render_digest(ctx)
    assert r.included == 12 and r.html.count("<img ") == 12 and r.html.count('class="ev"') == 12
    assert len(r.html.encode()) < HTML_LIMIT


def test_the_guard_measures_the_text_of_a_plain_text_mail() -> None:
    papers = [paper(i, abstract=LOREM * 30, title=f"A long title for paper {i} " * 12) for i in range(100)]
    plain = render_digest(make_context(papers, ada(plain_text=True)))
    assert plain.html == "" and len(plain.text.encode()) <= HTML_LIMIT and 0 < plain.included < 100
    assert f"{100 - plain.included} more papers" in plain.text


# -- explanations, the parts that need no model ---------------------------------------------------------


def test_only_an_interest_gets_a_sentence() -> None:
    assert deciding_interest("interest: video diffusion") == "video diffusion"
    assert deciding_interest("closest: interest: LLM reasoning") == "LLM reasoning"
    for other in ("trending", "seed paper: 2406.00001", "liked: 2406.00001", "closest: seed paper: 2406.00001",
                  "rising: +12 upvotes since 2026-08-18 06:00 UTC", "interest:", "disliked: 1"):
        assert deciding_interest(other) is None, other


def test_sentences_split_like_a_reader_would() -> None:
    abstract = ("Large models (e.g. GPT-4) reason well, as Smith et al. show on 3.5 benchmarks. We find "
                "three things:\n1) scale helps every model. 2) data helps more. Ok. See https://github.com/x/y for code.")
    assert split_sentences(abstract) == (
        "Large models (e.g. GPT-4) reason well, as Smith et al. show on 3.5 benchmarks.",
        "We find three things:", "1) scale helps every model.", "2) data helps more.", "See https://github.com/x/y for code.",
    )  # "Ok." is too short to quote (fewer than 4 words)
    assert quote("word " * 100).endswith("…") and len(quote("word " * 100)) <= 300
    assert split_sentences(" ") == ()


# -- plain text only, as the SMTP server receives it --------------------------------------------------------


def test_a_plain_text_subscriber_receives_one_text_plain_body(settings: Settings, smtp: SmtpTestServer) -> None:
    s = smtp_settings(smtp.port, settings, secret_key=SecretStr("looks-secret-0123456789"),
                      public_url="https://digest.example")
    readers = readers_with_picks(s, 2)
    with session_factory(readers.engine).begin() as session:
        edit_subscriber(session, readers.emails[1], plain_text=True, thumbnails=True)
        outbox.plan_deliveries(session, LISTED, readers.picks)
    report = send_day(readers.engine, s, LISTED)
    assert (report.sent, report.failed) == (2, 0)
    both = smtp.by_rcpt()
    html_mail = message_from_bytes(both[readers.emails[0]][0].raw, policy=policy.default)
    assert html_mail.get_content_type() == "multipart/alternative"
    received = both[readers.emails[1]][0]
    raw = received.raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; charset=\"utf-8\"\r\n" in head and b"multipart" not in raw
    assert b"Content-Transfer-Encoding: base64" in head and b"MIME-Version: 1.0" in head
    msg = message_from_bytes(raw, policy=policy.default)
    assert not msg.is_multipart() and msg.get_content_type() == "text/plain"
    for header in ("From", "List-Id", "List-Unsubscribe-Post"):  # the headers of today's mails, all of them
        assert msg[header] == html_mail[header], header
    assert msg["To"] == readers.emails[1] and msg["Message-ID"] == received.message_id
    assert msg["Subject"].startswith("Daily Papers, 2025-06-05: ") and msg["Date"]
    assert msg["List-Unsubscribe"].startswith("<https://digest.example/unsubscribe/")
    text = msg.get_content()
    assert "Daily Papers, Thursday, 5 June 2025" in text and "<" not in text.replace("<https", "")
    assert all(f"/papers/{p.arxiv_id}" in text for p in readers.picks[readers.ids[1]])


# -- the two preferences: CLI and preferences page ------------------------------------------------------


def test_cli_add_edit_show_the_two_preferences(db_url: str) -> None:
    runner = CliRunner()
    env = {"DIGEST_DATABASE_URL": db_url}
    ok = runner.invoke(app, ["subscribers", "add", "a@example.com", "--interest", "robots", "--thumbnails"], env=env)
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(app, ["subscribers", "show", "a@example.com"], env=env).output
    assert re.search(r"thumbnails\s+│ yes", shown) and re.search(r"plain text only\s+│ no", shown)
    edit = runner.invoke(app, ["subscribers", "edit", "a@example.com", "--no-thumbnails", "--plain-text"], env=env)
    assert edit.exit_code == 0 and "updated a@example.com: thumbnails, plain text" in edit.output
    shown = runner.invoke(app, ["subscribers", "show", "a@example.com"], env=env).output
    assert re.search(r"thumbnails\s+│ no", shown) and re.search(r"plain text only\s+│ yes", shown)
    other = runner.invoke(app, ["subscribers", "edit", "a@example.com", "--max-papers", "4"], env=env)
    assert other.exit_code == 0  # an edit that does not name them keeps them
    assert "plain text only │ yes" in runner.invoke(app, ["subscribers", "show", "a@example.com"], env=env).output
    default = runner.invoke(app, ["subscribers", "add", "b@example.com"], env=env)
    assert default.exit_code == 0
    assert re.search(r"thumbnails\s+│ no", runner.invoke(app, ["subscribers", "show", "b@example.com"], env=env).output)


def test_preferences_page_sets_and_shows_the_two_preferences(settings: Settings, smtp: SmtpTestServer) -> None:
    public = "http://testserver"
    s = smtp_settings(smtp.port, settings, secret_key=SecretStr("looks-secret-0123456789"), public_url=public)
    with TestClient(create_app(s)) as client:  # the app migrates the database
        sid = add_reader(s, "pref@example.org")
        url = LinkSigner.from_settings(s).preferences_url(sid, key=link_key(s, sid))
        page = client.get(url).text
        assert 'name="thumbnails"' in page and 'name="plain_text"' in page and " checked" not in page

        def save(**boxes: str) -> str:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text)
            assert token
            form = {"interests": "robotics", "negative_interests": "", "include_keywords": "",
                    "exclude_keywords": "", "max_papers": "10", "frequency": "daily", "csrf_token": token.group(1),
                    **boxes}
            r = client.post(url, data=form, headers={"Origin": public})
            assert r.status_code == 200 and "Your preferences are saved." in r.text
            return r.text

        shown = save(thumbnails="on")
        assert re.search(r'id="thumbnails" name="thumbnails" checked', shown)
        row = subscriber_row(s, "pref@example.org")
        assert (row.thumbnails, row.plain_text) == (True, False)
        shown = save(plain_text="on")  # an unchecked box is not sent: thumbnails off
        row = subscriber_row(s, "pref@example.org")
        assert (row.thumbnails, row.plain_text) == (False, True)
        assert re.search(r'id="plain_text" name="plain_text" checked', shown)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text)
        assert token
        bad = client.post(url, data={"interests": "x", "max_papers": "10", "frequency": "daily",
                                     "csrf_token": token.group(1), "thumbnails": "<script>"}, headers={"Origin": public})
        assert bad.status_code == 400 and "Nothing was saved" in bad.text
        assert subscriber_row(s, "pref@example.org").plain_text is True


def test_the_picks_feed_quotes_the_sentence_too() -> None:
    import feedparser

    from digest.feeds import FeedLinks, picks_feed

    p0, p1 = paper(0), paper(1)
    picks = [(LISTED, dataclasses.replace(pick(p0, 1), evidence=SENTENCE), p0), (LISTED, pick(p1, 2, "trending"), p1)]
    links = FeedLinks("https://digest.example/feed/x.atom", "https://digest.example/archive/x", "https://digest.example")
    feed = feedparser.parse(picks_feed(7, picks, links))
    first, second = feed.entries
    assert first.summary.startswith(f"Matches your interest “LLM reasoning”: “{SENTENCE}”. ")
    assert second.summary.startswith("Trending today. ") and "“" not in second.summary
