"""What a subscriber reads for each reason the ranking gives (render.reason_text)."""

from __future__ import annotations

import pytest

from digest.render import reason_text


@pytest.mark.parametrize(("reason", "text"), [
    ("interest: world models", "Matches your interest “world models”"),
    ("closest: interest: world models", "Closest to your interest “world models” (few close matches today)"),
    ("closest: seed paper: 1706.03762", "Closest to a paper you follow (arXiv 1706.03762; few close matches today)"),
    ("liked: 2608.15930", "Similar to a paper you liked (arXiv 2608.15930)"),
    ("rising: +42 upvotes since 2026-08-18 07:00 UTC", "Rising fast: +42 upvotes since 2026-08-18 07:00 UTC"),
    ("trending", "Trending today"),
])
def test_reason_text(reason: str, text: str) -> None:
    assert reason_text(reason) == text
