"""Every real listing in tests/fixtures/hf parses, with counts and field values checked against the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from digest.sources import ListingFormatError
from digest.sources.huggingface import load_listing_file, parse_api, parse_page

from .builders import API_2025_06_05, HF_FIXTURES, HF_LISTINGS, PAGE_2024_08_01


def test_every_fixture_is_listed_here() -> None:
    on_disk = {p.name for p in HF_FIXTURES.iterdir() if p.suffix in (".json", ".html")}
    assert on_disk == set(HF_LISTINGS)


@pytest.mark.parametrize("name", sorted(HF_LISTINGS))
def test_fixture_parses(name: str) -> None:
    day, count = HF_LISTINGS[name]
    listing = load_listing_file(HF_FIXTURES / name)
    assert listing.listing_date == day
    assert len(listing.papers) == count
    assert len({p.arxiv_id for p in listing.papers}) == count
    for p in listing.papers:
        assert p.listing_date == day, "listing date comes from submittedOnDailyAt, not publishedAt"
        assert p.title and p.abstract and p.authors
        assert "\n" not in p.abstract and "  " not in p.abstract
        assert "v" not in p.arxiv_id


@pytest.mark.parametrize("name", [n for n in HF_LISTINGS if n.endswith(".json")])
def test_api_fields_match_the_file(name: str) -> None:
    raw = json.loads((HF_FIXTURES / name).read_text())
    listing = load_listing_file(HF_FIXTURES / name)
    by_id = {p.arxiv_id: p for p in listing.papers}
    for item in raw:
        src = item["paper"]
        p = by_id[src["id"]]
        assert p.upvotes == src["upvotes"]
        assert p.num_comments == item["numComments"]
        assert list(p.authors) == [a["name"] for a in src["authors"]]
        assert p.title == " ".join(src["title"].split())
        assert p.ai_summary == src.get("ai_summary")
        assert list(p.ai_keywords) == src.get("ai_keywords", [])
        assert p.github_url == (src.get("githubRepo") or None)
        assert p.project_url == (src.get("projectPage") or None)
        # migration 0009: what was not kept before, as the file says it
        assert p.github_stars == src.get("githubStars")
        org = src.get("organization") or item.get("organization")
        assert p.organization_name == (org["name"] if org else None)
        assert list(p.media_urls) == (src.get("mediaUrls") or item.get("mediaUrls") or (
            [item["mediaUrl"]] if "cdn-uploads" in item.get("mediaUrl", "") else []))
        assert p.thumbnail_url == (item.get("thumbnail") or (
            item["mediaUrl"] if "social-thumbnails" in item.get("mediaUrl", "") else None))


def test_newest_schema_values() -> None:
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json")
    top = listing.papers[0]
    assert top.arxiv_id == "2608.15265"
    assert top.title == "VibeWorlding: Can Multimodal Agents Construct 3D Open Worlds End-to-End?"
    assert top.upvotes == 39
    assert top.authors[:2] == ("Yansong Ning", "Jingwen Ye")
    assert top.github_url == "https://github.com/usail-hkust/VibeWorlding-Gym"
    assert top.project_url == "https://huggingface.co/collections/usail-hkust/vibeworlder"
    assert top.organization == "Tencent" and top.organization_name == "tencent"
    assert top.github_stars == 24 and top.has_code
    assert top.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2608.15265.png"
    assert top.media_urls == ("https://cdn-uploads.huggingface.co/production/uploads/65d6a6f7654f85ff0baf161f/"
                              "Vl0S_afut32qbOPXTvnBo.gif",)
    assert "multimodal RL" in top.ai_keywords
    assert top.published_at is not None and top.published_at.date() == date(2026, 8, 15)


def test_2024_page_collapses_arxiv_line_breaks() -> None:
    listing = load_listing_file(PAGE_2024_08_01)
    llama = next(p for p in listing.papers if p.arxiv_id == "2407.21783")
    assert llama.title == "The Llama 3 Herd of Models"
    assert llama.abstract.startswith(
        "Modern artificial intelligence (AI) systems are powered by foundation models. This paper presents"
    )
    assert llama.ai_summary is None and llama.ai_keywords == ()


def test_versioned_ids_are_normalised() -> None:
    raw = json.loads((HF_FIXTURES / "api_daily_papers_2024-03-12.raw.json").read_text())
    raw[0]["paper"]["id"] = raw[0]["paper"]["id"] + "v3"
    listing = parse_api(json.dumps(raw), "mem", None)
    assert listing.papers[0].arxiv_id == "2403.06634"


def test_empty_day_is_explicit_not_an_error() -> None:
    listing = parse_api("[]", "mem", date(2025, 6, 21))
    assert listing.is_empty and listing.listing_date == date(2025, 6, 21)


def test_empty_without_a_date_is_refused() -> None:
    with pytest.raises(ListingFormatError, match="no date"):
        parse_api("[]", "mem", None)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda items: items[0]["paper"].pop("id"), "missing or empty 'id'"),
        (lambda items: items[1]["paper"].pop("title"), "missing or empty 'title'"),
        (lambda items: items[2]["paper"].update(summary="  "), "missing or empty 'summary'"),
        (lambda items: items[0].pop("paper"), "missing 'paper'"),
        (lambda items: items.__setitem__(3, "not an item"), "expected an object"),
    ],
)
def test_bad_item_names_source_and_field(mutate: Callable[[list[Any]], object], message: str) -> None:
    items = json.loads(API_2025_06_05.read_text())
    mutate(items)
    with pytest.raises(ListingFormatError, match=message) as e:
        parse_api(json.dumps(items), "the-file.json", None)
    assert "the-file.json" in str(e.value)


def test_not_an_array_is_refused() -> None:
    with pytest.raises(ListingFormatError, match="expected a JSON array"):
        parse_api('{"error": "rate limited"}', "u", date(2025, 1, 1))
    with pytest.raises(ListingFormatError, match="not JSON"):
        parse_api("<html>", "u", date(2025, 1, 1))


def test_page_without_hydration_div_is_refused() -> None:
    html = PAGE_2024_08_01.read_text()
    with pytest.raises(ListingFormatError, match='data-target="DailyPapers"'):
        parse_page(html.replace('data-target="DailyPapers"', 'data-target="DailyPapersV2"'), "page.html")


def test_page_selects_by_target_not_position() -> None:
    html = PAGE_2024_08_01.read_text()
    decoy = '<div data-target="SomethingElse" data-props="{&quot;x&quot;:1}"></div>'
    moved = html.replace("<body", "<body>" + decoy + "<div", 1) if "<body" in html else decoy + html
    assert len(parse_page(moved, "page.html").papers) == 13


@pytest.mark.parametrize("stars, kept", [(None, None), (0, 0), (12.0, 12), ("1.2k", None), (-3, None), (True, None),
                                         (10**12, None)])
def test_github_stars_are_a_count_or_dropped(stars: object, kept: int | None) -> None:
    """A badge decides nothing: stars that are not a count are dropped (like a URL that is not http(s)),
    never the day's listing."""
    raw = json.loads((HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json").read_text())[:1]
    raw[0]["paper"]["githubStars"] = stars
    (p,) = parse_api(json.dumps(raw), "test").papers
    assert p.github_stars == kept


def test_organization_handle_kept_whole_or_not_at_all() -> None:
    raw = json.loads((HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json").read_text())[:3]
    raw[0]["paper"]["organization"]["name"] = "n" * 201
    raw[1]["organization"] = raw[1]["paper"]["organization"] = {"name": "two words", "fullname": "Two Words"}
    raw[2]["mediaUrls"] = raw[2]["paper"]["mediaUrls"] = ["javascript:alert(1)", *[f"https://x.example/{i}.png" for i in range(20)]]
    a, b, c = parse_api(json.dumps(raw), "test").papers
    assert a.organization_name is None and a.organization == "Tencent"
    assert b.organization_name is None and b.organization == "Two Words"
    assert c.media_urls == tuple(f"https://x.example/{i}.png" for i in range(8))
