"""The digest as a subscriber receives it, end to end: the real 2026-08-18 listing stored, ranked with the real
embedding model, the explanations chosen, the day planned and sent through a real SMTP server; then the
received mails parsed back (badges, thumbnails, the sentence beside each interest, plain text only) and the
HTML part shown in headless Chromium in light and dark mode at 600 and 1200 pixels (screenshots in
test-artifacts/)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from digest import pipeline
from digest.bm25 import bm25n
from digest.config import Settings
from digest.embed import Embedder
from digest.explain import deciding_interest, split_sentences
from digest.lexicon import store_lexicon
from digest.models import Paper, Pick
from digest.render import HTML_LIMIT
from digest.send import send_day
from digest.sources.huggingface import load_listing_file
from digest.store import outbox, session_factory
from digest.store.papers import papers_by_ids
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryRow, SentenceEmbeddingRow

from .builders import HF_FIXTURES, ROOT, SECRET, bare_settings, smtp_settings, stored_id
from .smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow

DAY_FILE = HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json"
READER = "reader@example.org"  # interests, thumbnails on: the richest mail
PLAIN = "plain@example.org"  # the same interests, plain text only
SEEDED = "seeded@example.org"  # no interests, one seed paper: nothing an interest decided
INTERESTS = ["multimodal agents", "video diffusion", "LLM reasoning", "3D world generation", "reinforcement learning"]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Day:
    settings: Settings
    smtp: SmtpTestServer
    ids: dict[str, int]
    picks: dict[int, list[Pick]]  # as planned (read back from the outbox)
    papers: dict[str, Paper]
    embedder: Embedder

    def mail(self, email: str) -> EmailMessage:
        (received,) = self.smtp.by_rcpt()[email]
        return received.parse()


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    tmp = tmp_path_factory.mktemp("looks")
    server = SmtpTestServer().start()
    try:
        settings = smtp_settings(server.port, bare_settings(database_url=f"sqlite:///{tmp / 'digest.db'}",
                                                           public_url="https://digest.example",
                                                           secret_key=SecretStr(SECRET)))
        engine = pipeline.open_store(settings)
        listing = load_listing_file(DAY_FILE)
        pipeline.store(engine, listing)
        with session_factory(engine).begin() as s:
            ids = {
                READER: stored_id(add_subscriber(s, READER, interests=INTERESTS, max_papers=12, thumbnails=True)),
                PLAIN: stored_id(add_subscriber(s, PLAIN, interests=INTERESTS, max_papers=12, plain_text=True)),
                SEEDED: stored_id(add_subscriber(s, SEEDED, seed_papers=[listing.papers[0].arxiv_id], max_papers=5)),
            }
        embedder = Embedder.from_settings(settings)
        pipeline.plan(engine, settings, listing.listing_date, embedder=embedder)
        report = send_day(engine, settings, listing.listing_date)
        assert (report.sent, report.failed) == (3, 0), report
        with session_factory(engine)() as s:
            delivery = {sid: d for d, sid in s.query(DeliveryRow.id, DeliveryRow.subscriber_id)}
            picks = {sid: outbox.items_of(s, delivery[sid]) for sid in ids.values()}
            papers = papers_by_ids(s, [p.arxiv_id for ps in picks.values() for p in ps])
        yield Day(settings, server, ids, picks, papers, embedder)
    finally:
        server.stop()


def _html(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_sentence_beside_each_interest_is_in_both_parts_and_honest(day: Day) -> None:
    picks = day.picks[day.ids[READER]]
    assert len(picks) >= 10
    by_interest = [p for p in picks if deciding_interest(p.reason)]
    assert by_interest, "the reader's interests decided picks"
    html, text = _html(day.mail(READER)), _flat(_text(day.mail(READER)))
    shown = 0
    for p in picks:
        interest = deciding_interest(p.reason)
        if interest is None:
            assert p.evidence is None, p  # nothing an interest decided gets a sentence
            continue
        if p.evidence is None:
            continue
        shown += 1
        abstract = _flat(day.papers[p.arxiv_id].abstract)
        assert p.evidence.rstrip("…") in abstract  # quoted, not written
        assert f"“{p.evidence}”" in text
        assert f"&ldquo;{p.evidence}&rdquo;" in html or f"“{p.evidence}”" in html
    assert shown >= len(by_interest) // 2, "most interest picks get their sentence"
    # nothing an interest decided: the seeded reader's digest has no sentence at all
    seeded = day.picks[day.ids[SEEDED]]
    assert seeded and all(deciding_interest(p.reason) is None and p.evidence is None for p in seeded)
    assert not [line for line in _text(day.mail(SEEDED)).splitlines() if line.startswith("   “")]
    assert 'class="ev"' not in _html(day.mail(SEEDED))


def test_the_sentence_is_the_one_the_ranking_relevance_prefers(day: Day) -> None:
    """Recomputed independently of digest.explain: the abstract split again, its sentences encoded in a
    batch of their own, scored cosine + rank_lexical_weight x BM25n with the store's lexicon; the sentence
    shown is the best one, and it clears the floor."""
    w = day.settings.rank_lexical_weight
    engine = pipeline.open_store(day.settings)
    with session_factory(engine)() as s:
        lexicon = store_lexicon(s)
    cases = [(p, deciding_interest(p.reason)) for p in day.picks[day.ids[READER]] if p.evidence][:4]
    assert len(cases) >= 3
    split = [list(split_sentences(day.papers[p.arxiv_id].abstract)) for p, _ in cases]
    vecs = day.embedder.encode([x for sentences in split for x in sentences])
    queries = day.embedder.encode([str(t) for _, t in cases])
    start = 0
    for (p, interest), sentences, q in zip(cases, split, queries):
        block = vecs[start : start + len(sentences)]
        start += len(sentences)
        score = block @ q + w * bm25n([lexicon.query(str(interest))], lexicon.papers(sentences))[0]
        best = sentences[int(score.argmax())]
        shown = p.evidence.rstrip("…") if p.evidence else ""
        assert best.startswith(shown), (interest, p.evidence, best)
        assert score.max() >= day.settings.rank_topup_min_relevance


def test_sentences_are_split_and_encoded_once(day: Day) -> None:
    engine = pipeline.open_store(day.settings)
    with session_factory(engine)() as s:
        before = {(r.arxiv_id, r.created_at) for r in s.query(SentenceEmbeddingRow)}
    assert before, "the sentences of picked papers are cached"
    ranked = pipeline.rank(engine, day.settings, load_listing_file(DAY_FILE).listing_date, embedder=day.embedder)
    with session_factory(engine)() as s:
        after = {(r.arxiv_id, r.created_at) for r in s.query(SentenceEmbeddingRow)}
    assert before <= after  # nothing re-split or re-encoded
    assert any(p.evidence for ps in ranked.picks.values() for p in ps)


def test_badges_thumbnails_and_size_of_the_received_mail(day: Day) -> None:
    msg = day.mail(READER)
    assert msg.get_content_type() == "multipart/alternative"
    html, text = _html(msg), _text(msg)
    assert len(html.encode()) < HTML_LIMIT
    picks = day.picks[day.ids[READER]]
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == sum(1 for p in picks if day.papers[p.arxiv_id].thumbnail_url)
    for tag in imgs:
        assert 'width="552"' in tag and 'height="298"' in tag and 'alt="Thumbnail of the paper “' in tag
        assert 'src="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/' in tag
    for p in picks:
        paper = day.papers[p.arxiv_id]
        if paper.github_url:
            label = f"Code &middot; ★ {paper.github_stars}" if paper.github_stars is not None else "Code</a>"
            assert f'href="{paper.github_url}"' in html
            assert label in html or label.replace("&middot;", "·") in html
            stars = f" (★ {paper.github_stars})" if paper.github_stars is not None else ""
            assert f"Code{stars}: {paper.github_url}" in text
    assert ("No code linked" in html) == any(not day.papers[p.arxiv_id].github_url for p in picks)
    assert '<meta name="color-scheme" content="light dark">' in html and "prefers-color-scheme: dark" in html


def test_plain_text_only_mail_as_received(day: Day) -> None:
    received = day.smtp.by_rcpt()[PLAIN][0]
    msg = received.parse()
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert msg.get_content_charset() == "utf-8" and msg["Content-Transfer-Encoding"] == "base64"
    assert msg["List-Unsubscribe"].startswith("<https://digest.example/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and msg["List-Id"]
    assert msg["Subject"].startswith("Daily Papers, 2026-08-18: ") and msg["Message-ID"] == received.message_id
    body = str(msg.get_content())
    assert "<html" not in body.lower() and "Daily Papers, Tuesday, 18 August 2026" in body
    same = [p.arxiv_id for p in day.picks[day.ids[PLAIN]]]
    assert same == [p.arxiv_id for p in day.picks[day.ids[READER]]]  # the same picks, text alone
    for p in day.picks[day.ids[PLAIN]]:
        assert f"/papers/{p.arxiv_id}" in body


def _thumbnail_png(browser: object) -> bytes:
    """A 1200 x 648 PNG made by the browser: what HF's CDN (unreachable from tests) would serve."""
    page = browser.new_page(viewport={"width": 1200, "height": 648})  # type: ignore[attr-defined]
    page.set_content('<body style="margin:0"><div style="width:1200px;height:648px;background:linear-gradient('
                     '135deg,#fde68a,#f97316);font:bold 64px Arial;display:flex;align-items:center;'
                     'justify-content:center;color:#1f2937">paper thumbnail 1200 x 648</div></body>')
    png: bytes = page.screenshot()
    page.close()
    return png


def test_screenshots_light_and_dark_at_600_and_1200(day: Day) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    html = _html(day.mail(READER))
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            png = _thumbnail_png(browser)
            backgrounds = {}
            for scheme in ("light", "dark"):
                for width in (600, 1200):
                    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
                    page.route("https://cdn-thumbnails.huggingface.co/**",
                               lambda route: route.fulfill(status=200, content_type="image/png", body=png))
                    page.route(re.compile(r"^(?!https://cdn-thumbnails\.huggingface\.co/).*"),
                               lambda route: route.abort())  # a mail loads nothing else
                    page.set_content(html, wait_until="load")
                    page.screenshot(path=str(shots / f"digest-{scheme}-{width}.png"), full_page=True)
                    page.screenshot(path=str(shots / f"digest-{scheme}-{width}-first-screen.png"))
                    looks = page.evaluate("""() => {
                        const card = document.querySelector('td.card');
                        const img = document.querySelector('td.card img');
                        return {
                          overflow: document.documentElement.scrollWidth - window.innerWidth,
                          card: getComputedStyle(card).backgroundColor,
                          title: getComputedStyle(document.querySelector('.title a')).color,
                          imgW: img.getBoundingClientRect().width, imgH: img.getBoundingClientRect().height,
                          natural: img.naturalWidth,
                        };
                    }""")
                    assert looks["overflow"] <= 0, (scheme, width, looks)  # nothing wider than the window
                    assert looks["natural"] == 1200, looks  # the thumbnail loaded
                    assert looks["imgW"] <= 552 and abs(looks["imgH"] / looks["imgW"] - 648 / 1200) < 0.01, looks
                    backgrounds[(scheme, width)] = (looks["card"], looks["title"])
                    page.close()
        finally:
            browser.close()
    assert backgrounds[("light", 600)][0] == "rgb(255, 255, 255)"
    assert backgrounds[("dark", 600)][0] == "rgb(22, 27, 38)"  # .card in prefers-color-scheme: dark
    assert backgrounds[("light", 1200)] == backgrounds[("light", 600)]
    assert backgrounds[("dark", 1200)] == backgrounds[("dark", 600)]
    assert backgrounds[("dark", 600)][1] != backgrounds[("light", 600)][1]  # links readable on dark
