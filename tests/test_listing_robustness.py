"""Listings as they really arrive: saved empty days, a byte-order mark, a file replayed under the wrong date,
hostile field sizes and numbers, deep JSON, oversized bodies and a host name that does not resolve. Each bad
input is one line and exit 2 at the command line, never a traceback; nothing is stored from it."""

from __future__ import annotations

import codecs
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest import pipeline
from digest.cli import app
from digest.config import Settings
from digest.sources import FetchError, HostNotFoundError, ListingFormatError
from digest.sources import huggingface as hf
from digest.sources.huggingface import fetch_listing, load_listing_file, parse_api
from digest.store import session_factory
from digest.store.papers import count_papers

from .builders import API_2025_06_05, PAGE_2024_08_01, HfScript

runner = CliRunner()
ITEMS: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"DIGEST_DATABASE_URL": db_url}


def stored(db_url: str) -> int:
    engine = pipeline.open_store(Settings(_env_file=None, database_url=db_url))  # type: ignore[call-arg]
    with session_factory(engine)() as s:
        return count_papers(s)


def one_line_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in result.output, result.output


# -- a saved empty day ------------------------------------------------------------------------------------


def test_saved_empty_day_replays_with_date(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "saved.json"
    empty.write_text("[]")
    result = runner.invoke(app, ["fetch", "--from-file", str(empty), "--date", "2025-06-21"], env=env)
    assert result.exit_code == 0, result.output
    assert "2025-06-21" in result.output and "no listing" in result.output


def test_saved_empty_day_takes_its_date_from_the_file_name(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "api_daily_papers_2025-06-21.json"
    empty.write_text("[]\n")
    result = runner.invoke(app, ["fetch", "--from-file", str(empty)], env=env)
    assert result.exit_code == 0, result.output
    assert "2025-06-21" in result.output and "no listing" in result.output


def test_saved_empty_day_without_any_date_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "saved.json"
    empty.write_text("[]")
    one_line_error(runner.invoke(app, ["fetch", "--from-file", str(empty)], env=env), "--date")


# -- the wrong date ---------------------------------------------------------------------------------------


def test_replay_under_another_date_is_refused(env: dict[str, str], db_url: str) -> None:
    result = runner.invoke(app, ["fetch", "--from-file", str(API_2025_06_05), "--date", "2025-06-06"], env=env)
    one_line_error(result, "2025-06-05", "2025-06-06")
    assert stored(db_url) == 0
    ok = runner.invoke(app, ["fetch", "--from-file", str(API_2025_06_05), "--date", "2025-06-05"], env=env)
    assert ok.exit_code == 0, ok.output


def test_the_file_name_does_not_override_the_listing_dates(tmp_path: Path) -> None:
    misnamed = tmp_path / "listing_2025-06-09.json"
    misnamed.write_bytes(API_2025_06_05.read_bytes())
    assert load_listing_file(misnamed).listing_date == date(2025, 6, 5)


# -- a byte-order mark ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [API_2025_06_05, PAGE_2024_08_01], ids=["api", "page"])
def test_byte_order_mark_is_accepted(source: Path, tmp_path: Path) -> None:
    with_bom = tmp_path / f"bom-{source.name}"
    with_bom.write_bytes(codecs.BOM_UTF8 + source.read_bytes())
    assert load_listing_file(with_bom).papers == load_listing_file(source).papers
    assert len(parse_api(codecs.BOM_UTF8.decode() + API_2025_06_05.read_text(), "mem").papers) == 30


# -- hostile sizes ----------------------------------------------------------------------------------------


def test_every_scraped_field_is_bounded() -> None:
    items = json.loads(json.dumps(ITEMS[:2]))
    p = items[0]["paper"]
    p["title"] = "Attention " * 100_000
    p["summary"] = "word " * 1_000_000
    p["ai_summary"] = "sum " * 100_000
    p["authors"] = [{"name": "A" * 10_000}] + [{"name": f"Author {i}"} for i in range(5000)]
    p["ai_keywords"] = ["k" * 10_000] + [f"kw{i}" for i in range(5000)]
    p["githubRepo"] = "https://github.com/" + "x" * 100_000
    p["projectPage"] = "https://example.org/" + "y" * 100
    items[0]["organization"] = {"fullname": "O" * 10_000}
    paper = parse_api(json.dumps(items), "mem").papers[0]
    assert len(paper.title) <= hf.MAX_TITLE_CHARS and paper.title.startswith("Attention Attention")
    assert len(paper.abstract) <= hf.MAX_ABSTRACT_CHARS and paper.abstract.startswith("word word")
    assert paper.ai_summary is not None and len(paper.ai_summary) <= hf.MAX_SUMMARY_CHARS
    assert len(paper.authors) == hf.MAX_AUTHORS and all(len(a) <= hf.MAX_NAME_CHARS for a in paper.authors)
    assert len(paper.ai_keywords) == hf.MAX_KEYWORDS and all(len(k) <= hf.MAX_KEYWORD_CHARS for k in paper.ai_keywords)
    assert paper.github_url is None, "an absurd URL is dropped, not cut (a cut URL leads elsewhere)"
    assert paper.project_url == p["projectPage"]
    assert paper.organization is not None and len(paper.organization) <= hf.MAX_NAME_CHARS


def test_an_absurd_id_is_refused() -> None:
    items = json.loads(json.dumps(ITEMS[:1]))
    items[0]["paper"]["id"] = "2506." + "1" * 500
    with pytest.raises(ListingFormatError, match="'id'"):
        parse_api(json.dumps(items), "mem")


@pytest.mark.parametrize("value", [1e30, "abc", -3, True, 2.5, [1]], ids=str)
@pytest.mark.parametrize("field", ["upvotes", "numComments"])
def test_malformed_numbers_are_one_line(env: dict[str, str], tmp_path: Path, db_url: str, field: str,
                                        value: object) -> None:
    items = json.loads(json.dumps(ITEMS))
    if field == "upvotes":
        items[3]["paper"]["upvotes"] = value
    else:
        items[3]["numComments"] = value
    bad = tmp_path / "listing_2025-06-05.json"
    bad.write_text(json.dumps(items))
    one_line_error(runner.invoke(app, ["fetch", "--from-file", str(bad)], env=env), f"'{field}'")
    assert stored(db_url) == 0


def test_integral_floats_and_missing_counts_are_fine() -> None:
    items = json.loads(json.dumps(ITEMS[:2]))
    items[0]["paper"]["upvotes"] = 12.0
    items[1]["paper"].pop("upvotes")
    items[1].pop("numComments", None)
    a, b = parse_api(json.dumps(items), "mem").papers
    assert (a.upvotes, b.upvotes, b.num_comments) == (12, 0, 0)


@pytest.mark.parametrize("kind", ["api", "page"])
def test_deeply_nested_json_is_one_line(env: dict[str, str], tmp_path: Path, kind: str) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    if kind == "api":
        body = deep
    else:
        props = deep.replace("[", "&#91;").replace("]", "&#93;")
        body = f'<html><body><div data-target="DailyPapers" data-props="{props}"></div></body></html>'
    path = tmp_path / f"listing_2025-06-05.{'json' if kind == 'api' else 'html'}"
    path.write_text(body)
    one_line_error(runner.invoke(app, ["fetch", "--from-file", str(path)], env=env), "nested")


def test_an_oversized_body_is_refused_without_reading_it_all(hf_server: HfScript, settings: Settings) -> None:
    hf_server.answers["/api/daily_papers"] = [(200, {}, b"[" + b" " * 200_000 + b"]")]
    hf_server.answers["/papers/date/2025-06-05"] = [(200, {}, b"<html>" + b" " * 200_000 + b"</html>")]
    s = settings.model_copy(update={"hf_base_url": hf_server.base, "http_max_response_bytes": 100_000})
    with pytest.raises(ListingFormatError, match="100000 bytes"):
        fetch_listing(date(2025, 6, 5), s)


def test_oversized_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "listing_2025-06-05.json"
    big.write_bytes(API_2025_06_05.read_bytes())
    with pytest.raises(ListingFormatError, match="larger than 1000 bytes"):
        load_listing_file(big)


# -- a host name that does not resolve ---------------------------------------------------------------------


def test_unresolvable_host_fails_at_once(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    s = settings.model_copy(update={"hf_base_url": "http://papers-digest-test.invalid", "http_max_attempts": 5})
    caplog.set_level(logging.INFO)
    with pytest.raises(HostNotFoundError, match="papers-digest-test.invalid") as e:
        fetch_listing(date(2025, 6, 5), s)
    assert isinstance(e.value, FetchError)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert retries == [], "a DNS failure is not retried"
    fallbacks = [r for r in caplog.records if "path failed" in r.getMessage()]
    assert len(fallbacks) <= 1, "the fallback path has the same host: not tried"
