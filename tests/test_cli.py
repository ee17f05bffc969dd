"""The `digest` command: every shared fixture stores the right number of papers; errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app

from .builders import API_2025_06_05, HF_FIXTURES, HF_LISTINGS, PAGE_2024_08_01

runner = CliRunner()


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"DIGEST_DATABASE_URL": db_url, "DIGEST_EMBED_INTERESTS_ON_WRITE": "false"}


def test_fetch_from_file_stores_every_fixture(env: dict[str, str]) -> None:
    total = 0
    for name, (day, count) in sorted(HF_LISTINGS.items()):
        result = runner.invoke(app, ["fetch", "--from-file", str(HF_FIXTURES / name)], env=env)
        assert result.exit_code == 0, result.output
        total += count
        listed = runner.invoke(app, ["papers", "list", "--date", day.isoformat()], env=env)
        assert f"{count} papers" in listed.output
    assert f"{total} papers" in runner.invoke(app, ["papers", "list"], env=env).output
    again = runner.invoke(app, ["fetch", "--from-file", str(PAGE_2024_08_01)], env=env)
    assert "│      13 │   0 │       0 │        13 │" in again.output


def test_subscribers_commands(env: dict[str, str]) -> None:
    # A seed paper must exist (issue 13): one of a stored listing's, given as a versioned id.
    assert runner.invoke(app, ["fetch", "--from-file", str(API_2025_06_05)], env=env).exit_code == 0
    ok = runner.invoke(app, ["subscribers", "add", "a@example.com", "--interest", "video diffusion",
                             "--interest", "LLM reasoning", "--not-interested", "robotics",
                             "--exclude", "survey", "--seed-paper", "2506.03569v1", "--max-papers", "5"], env=env)
    assert ok.exit_code == 0, ok.output
    listed = runner.invoke(app, ["subscribers", "list"], env=env)
    assert "a@example.com" in listed.output and "1 subscribers" in listed.output
    dup = runner.invoke(app, ["subscribers", "add", "A@example.com"], env=env)
    assert dup.exit_code == 2 and "already subscribed" in dup.output
    assert runner.invoke(app, ["subscribers", "remove", "a@example.com"], env=env).exit_code == 0
    gone = runner.invoke(app, ["subscribers", "remove", "a@example.com"], env=env)
    assert gone.exit_code == 2 and "no subscriber" in gone.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["subscribers", "add", "not-an-address"], "invalid email address"),
        (["subscribers", "add", "a@example.com", "--name", "Eve\nBcc: x@example.com"], "line break"),
        (["fetch", "--from-file", "/nonexistent/listing.json"], "cannot read"),
        (["fetch"], "give --date"),
    ],
)
def test_errors_are_one_clear_line(env: dict[str, str], args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_listing_file_fails_loudly(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "listing_2025-06-05.json"
    bad.write_text('[{"paper": {"id": "2506.00001", "title": "T"}}]')
    result = runner.invoke(app, ["fetch", "--from-file", str(bad)], env=env)
    assert result.exit_code == 2 and "missing or empty 'summary'" in result.output


@pytest.mark.parametrize("cmd", [[], ["fetch"], ["db", "upgrade"], ["papers", "list"], ["subscribers", "add"]])
def test_help(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
