"""Fetching over real HTTP from a local server on 127.0.0.1: retries, Retry-After, fallback, failures."""

from __future__ import annotations

import socket
from datetime import date
from typing import Any

import pytest

from digest.config import Settings
from digest.sources import FetchError, ListingFormatError
from digest.sources.huggingface import fetch_listing

from .builders import API_2025_06_05, PAGE_2024_08_01, HfScript

API_BODY = API_2025_06_05.read_bytes()
PAGE_BODY = PAGE_2024_08_01.read_bytes()


def make_settings(base: str, settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"hf_base_url": base, **changes})


def test_429_then_503_then_200_honours_retry_after(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    script.answers["/api/daily_papers"] = [
        (429, {"Retry-After": "1"}, b"slow down"),
        (503, {}, b"unavailable"),
        (200, {"Content-Type": "application/json"}, API_BODY),
    ]
    listing = fetch_listing(date(2025, 6, 5), make_settings(script.base, settings))
    assert len(listing.papers) == 30
    assert [entry[1] for entry in script.log] == ["/api/daily_papers"] * 3
    assert script.log[0][2] == {"date": ["2025-06-05"]}
    gap = script.log[1][0] - script.log[0][0]
    assert gap >= 1.0, f"Retry-After: 1 was not honoured (waited {gap:.2f}s)"
    assert script.log[0][3].startswith("papers-digest/")


def test_page_is_the_fallback_when_the_api_fails(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    script.answers["/api/daily_papers"] = [(500, {}, b"boom")]
    script.answers["/papers/date/2024-08-01"] = [(200, {"Content-Type": "text/html"}, PAGE_BODY)]
    listing = fetch_listing(date(2024, 8, 1), make_settings(script.base, settings, http_max_attempts=2))
    assert len(listing.papers) == 13
    paths = [entry[1] for entry in script.log]
    assert paths == ["/api/daily_papers", "/api/daily_papers", "/papers/date/2024-08-01"]


def test_page_primary_when_configured(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    script.answers["/papers/date/2024-08-01"] = [(200, {}, PAGE_BODY)]
    listing = fetch_listing(date(2024, 8, 1), make_settings(script.base, settings, hf_primary="page"))
    assert len(listing.papers) == 13 and [e[1] for e in script.log] == ["/papers/date/2024-08-01"]


def test_mutated_page_raises_listing_format_error(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    mutated = PAGE_BODY.replace(b'data-target="DailyPapers"', b'data-target="Renamed"')
    script.answers["/papers/date/2024-08-01"] = [(200, {}, mutated)]
    script.answers["/api/daily_papers"] = [(200, {}, b'{"error": "Invalid date"}')]
    with pytest.raises(ListingFormatError) as e:
        fetch_listing(date(2024, 8, 1), make_settings(script.base, settings, hf_primary="page"))
    assert "DailyPapers" in str(e.value)
    assert any("expected a JSON array" in n for n in e.value.__notes__)


def test_empty_day_over_http(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    script.answers["/api/daily_papers"] = [(200, {}, b"[]")]
    listing = fetch_listing(date(2025, 6, 21), make_settings(script.base, settings))
    assert listing.is_empty and listing.listing_date == date(2025, 6, 21)


def test_gives_up_within_attempts(hf_server: HfScript, settings: Settings) -> None:
    script = hf_server
    script.answers["/api/daily_papers"] = [(503, {}, b"down")]
    script.answers["/papers/date/2025-06-05"] = [(503, {}, b"down")]
    with pytest.raises(FetchError, match="HTTP 503"):
        fetch_listing(date(2025, 6, 5), make_settings(script.base, settings, http_max_attempts=3))
    assert len(script.log) == 6


def test_connection_refused_is_a_fetch_error(settings: Settings) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(FetchError, match="ConnectError"):
        fetch_listing(date(2025, 6, 5), make_settings(f"http://127.0.0.1:{port}", settings, http_max_attempts=2))
