"""Seed papers from anywhere (issue 13): arXiv ids with or without a version, old-style ids, arXiv and HF URLs;
a paper not in the store is fetched from the Hugging Face paper API (the local stand-in on 127.0.0.1,
answering with a real paper object) and stored; a BibTeX library (Zotero, Mendeley) gives ids or titles."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from digest import pipeline
from digest.config import Settings
from digest.seeds import SeedError, parse_paper_ref, resolve_seed_papers, seeds_from_bibtex
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.papers import papers_by_ids
from digest.store.tables import PaperRow

from .builders import FIXTURES, HF_FIXTURES, HfScript, subscriber_row

SEEDS = FIXTURES / "seeds"
ROAD = "2405.15682"  # The Road Less Scheduled
ROAD_JSON = (SEEDS / "api_paper_2405.15682.json").read_bytes()
SEARCH_JSON = (SEEDS / "api_papers_search_grokked.json").read_bytes()
LISTING = HF_FIXTURES / "api_daily_papers_2024-05-27.collector.json"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("raw", "want"), [
    ("2405.15682", ROAD),
    (" 2405.15682v3 ", ROAD),
    ("arXiv:2405.15682v1", ROAD),
    ("https://arxiv.org/abs/2405.15682v2", ROAD),
    ("http://arxiv.org/pdf/2405.15682v2.pdf", ROAD),
    ("https://export.arxiv.org/abs/2405.15682", ROAD),
    ("https://huggingface.co/papers/2405.15682", ROAD),
    ("hf.co/papers/2405.15682?utm=x#community", ROAD),
    ("10.48550/arXiv.2405.15682", ROAD),
    ("https://doi.org/10.48550/arXiv.2405.15682", ROAD),
    ("0704.0001", "0704.0001"),
    ("hep-th/9901001", "hep-th/9901001"),
    ("https://arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001"),
    ("math.GT/0309136", "math.GT/0309136"),
])
def test_parse_paper_ref(raw: str, want: str) -> None:
    assert parse_paper_ref(raw) == want


@pytest.mark.parametrize("raw", ["foo", "", "1234.5", "2405.156821", "https://example.org/abs/2405.15682",
                                 "https://arxiv.org/list/cs.LG/recent", "hep-th/99"])
def test_parse_paper_ref_refuses_what_is_not_an_id(raw: str) -> None:
    with pytest.raises(SeedError, match="not an arXiv id") as e:
        parse_paper_ref(raw)
    assert "\n" not in str(e.value)


def _settings(settings: Settings, hf: HfScript) -> Settings:
    return settings.model_copy(update={"hf_base_url": hf.base})


def test_a_paper_not_in_the_store_is_fetched_stored_and_kept(settings: Settings, hf_server: HfScript) -> None:
    hf_server.answers[f"/api/papers/{ROAD}"] = [(503, {}, b"busy"), (200, JSON, ROAD_JSON)]  # retried
    s = _settings(settings, hf_server)
    engine = pipeline.open_store(s)
    assert resolve_seed_papers(engine, s, ["https://arxiv.org/abs/2405.15682v2"]) == [ROAD]
    assert [e[1] for e in hf_server.log] == [f"/api/papers/{ROAD}"] * 2
    with session_factory(engine)() as session:
        paper = papers_by_ids(session, [ROAD])[ROAD]
    want = json.loads(ROAD_JSON)
    assert paper.title == "The Road Less Scheduled" and paper.abstract.startswith(want["summary"][:40])
    assert paper.authors[0] == "Aaron Defazio" and paper.upvotes == want["upvotes"]
    assert paper.listing_date.isoformat() == want["publishedAt"][:10]  # never on a listing we stored
    assert resolve_seed_papers(engine, s, [ROAD + "v1"]) == [ROAD]  # in the store now: no request
    assert len(hf_server.log) == 2


def test_a_stored_paper_needs_no_request(settings: Settings, hf_server: HfScript) -> None:
    s = _settings(settings, hf_server)
    engine = pipeline.open_store(s)
    pipeline.store(engine, load_listing_file(LISTING))
    assert resolve_seed_papers(engine, s, ["https://huggingface.co/papers/2405.15032", "2405.15223v1"]) == [
        "2405.15032", "2405.15223"]
    assert hf_server.log == []


def test_an_unknown_id_is_refused(settings: Settings, hf_server: HfScript) -> None:
    s = _settings(settings, hf_server)
    engine = pipeline.open_store(s)
    with pytest.raises(SeedError, match=r"2405\.99999: no such paper on Hugging Face"):
        resolve_seed_papers(engine, s, ["2405.99999"])
    with pytest.raises(SeedError, match=r"hep-th/9901001: no such paper on Hugging Face"):
        resolve_seed_papers(engine, s, ["hep-th/9901001"])
    with session_factory(engine)() as session:
        assert list(session.scalars(select(PaperRow))) == []


def _cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from digest import cli

    monkeypatch.setattr(cli, "settings", lambda: settings)
    return CliRunner().invoke(cli.app, list(args))


def test_cli_add_with_seed_paper_urls(settings: Settings, hf_server: HfScript, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_server.answers[f"/api/papers/{ROAD}"] = [(200, JSON, ROAD_JSON)]
    s = _settings(settings, hf_server)
    r = _cli(s, monkeypatch, "subscribers", "add", "ada@example.org", "--seed-paper", "arxiv.org/abs/2405.15682v2",
             "--interest", "optimizers")
    assert r.exit_code == 0, r.output
    assert subscriber_row(s, "ada@example.org").seed_papers == [ROAD]
    assert "1 seed paper" in r.output


@pytest.mark.parametrize(("seed", "message"), [
    ("foo", "'foo' is not an arXiv id"),
    ("2405.99999", "2405.99999: no such paper on Hugging Face"),
])
def test_cli_add_refuses_a_bad_seed_and_adds_nothing(settings: Settings, hf_server: HfScript,
                                                     monkeypatch: pytest.MonkeyPatch, seed: str, message: str) -> None:
    s = _settings(settings, hf_server)
    r = _cli(s, monkeypatch, "subscribers", "add", "ada@example.org", "--seed-paper", seed)
    assert r.exit_code == 2
    assert message in r.output and len(r.output.strip().splitlines()) == 1
    engine = pipeline.open_store(s)
    with session_factory(engine)() as session:
        assert papers_by_ids(session, [seed]) == {}
    list_ = _cli(s, monkeypatch, "subscribers", "list")
    assert "ada@example.org" not in list_.output


def test_seeds_from_a_zotero_and_mendeley_bibtex(settings: Settings, hf_server: HfScript) -> None:
    hf_server.answers[f"/api/papers/{ROAD}"] = [(200, JSON, ROAD_JSON)]
    hf_server.answers["/api/papers/search"] = [(200, JSON, SEARCH_JSON)]
    s = _settings(settings, hf_server)
    engine = pipeline.open_store(s)
    listing = load_listing_file(LISTING)
    stored = [p for p in listing.papers if p.arxiv_id not in (ROAD, "2405.15071")]
    pipeline.store(engine, type(listing)(listing.listing_date, tuple(stored), listing.source))
    found = seeds_from_bibtex(engine, s, SEEDS / "refs.bib")
    assert found.ids == [ROAD, "2405.15032", "2405.15223", "2405.14908", "2405.15574", "2405.15071"]
    assert [k for k, _ in found.skipped] == ["goodfellow_deep_2016", "old_style_1999"]
    assert "no arXiv id, and no paper with this title" in found.skipped[0][1]
    assert "hep-th/9901001: no such paper on Hugging Face" in found.skipped[1][1]
    searched = [q for _, path, q, _ in hf_server.log if path == "/api/papers/search"]
    assert [q["q"] for q in searched][0] == [
        "Grokked Transformers are Implicit Reasoners: A Mechanistic Journey to the Edge of Generalization"]


def test_cli_add_with_seed_file(settings: Settings, hf_server: HfScript, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_server.answers[f"/api/papers/{ROAD}"] = [(200, JSON, ROAD_JSON)]
    hf_server.answers["/api/papers/search"] = [(200, JSON, b"[]")]
    s = _settings(settings, hf_server)
    pipeline.store(pipeline.open_store(s), load_listing_file(LISTING))
    r = _cli(s, monkeypatch, "subscribers", "add", "bib@example.org", "--seed-file", str(SEEDS / "refs.bib"),
             "--seed-paper", "2405.15125")
    assert r.exit_code == 0, r.output
    assert subscriber_row(s, "bib@example.org").seed_papers == [
        "2405.15125", ROAD, "2405.15032", "2405.15223", "2405.14908", "2405.15574", "2405.15071"]
    assert re.search(r"skipped 2 of 8 BibTeX entries", r.output)


def test_cli_seed_file_that_is_not_bibtex(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "refs.bib"
    junk.write_text("this is not a bibliography\n", encoding="utf-8")
    r = _cli(settings, monkeypatch, "subscribers", "add", "x@example.org", "--seed-file", str(junk))
    assert r.exit_code == 2 and "no BibTeX entries" in r.output
    missing = _cli(settings, monkeypatch, "subscribers", "add", "x@example.org", "--seed-file", str(tmp_path / "no.bib"))
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1


# -- the preferences page ------------------------------------------------------------------------------


def _prefs_page(settings: Settings, hf: HfScript):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from digest.signing import LinkSigner
    from digest.web import create_app

    from .builders import SECRET, add_reader, link_key

    s = settings.model_copy(update={"hf_base_url": hf.base, "secret_key": SecretStr(SECRET),
                                    "public_url": "http://testserver"})
    pipeline.open_store(s)
    sid = add_reader(s, "pref@example.org")
    return s, TestClient(create_app(s)), LinkSigner.from_settings(s).preferences_url(sid, key=link_key(s, sid))


def _post(client, url: str, seeds: str):  # type: ignore[no-untyped-def]
    page = client.get(url)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token and 'name="seed_papers"' in page.text
    return client.post(url, data={"interests": "optimizers", "negative_interests": "", "include_keywords": "",
                                  "exclude_keywords": "", "max_papers": "5", "frequency": "daily",
                                  "seed_papers": seeds, "csrf_token": token.group(1)})


def test_preferences_page_takes_seed_papers_from_anywhere(settings: Settings, hf_server: HfScript) -> None:
    hf_server.answers[f"/api/papers/{ROAD}"] = [(200, JSON, ROAD_JSON)]
    s, client, url = _prefs_page(settings, hf_server)
    pipeline.store(pipeline.open_store(s), load_listing_file(LISTING.parent / "api_daily_papers_2025-06-05.collector.json"))
    with client:
        r = _post(client, url, "https://huggingface.co/papers/2405.15682\narXiv:2506.03569v2\n")
        assert r.status_code == 200 and "saved" in r.text, r.text
        assert subscriber_row(s, "pref@example.org").seed_papers == [ROAD, "2506.03569"]
        assert ROAD in client.get(url).text  # shown back, one per line
        for bad, why in (("foo", "is not an arXiv id"), ("2405.99999", "no such paper on Hugging Face")):
            r = _post(client, url, f"{ROAD}\n{bad}")
            assert r.status_code == 400 and why in r.text and "Nothing was saved" in r.text
        row = subscriber_row(s, "pref@example.org")
        assert (row.seed_papers, row.interests) == ([ROAD, "2506.03569"], ["optimizers"])
