"""`digest run` as an operator meets it: a real subprocess, a real Prefect server, the HF stand-in and the SMTP
test server. Each outcome is one line on stderr and a documented exit code (README: 0, 1, 2, 3, 4); the
trace stays in the Prefect logs unless --verbose."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest.cli import EXIT_FAILED, EXIT_SEND_STOPPED, EXIT_USER_ERROR, app, exit_code_for
from digest.config import package_version
from digest.sources import ListingFormatError

from .builders import API_2025_06_05, SECRET, HfScript, add_reader, bare_settings, items_for

SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())
DIGEST = Path(sys.executable).parent / "digest"
WED, SAT = date(2025, 6, 11), date(2025, 6, 14)


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"papers-digest {package_version()}"


def test_exit_codes_by_error() -> None:
    from digest.embed import ModelUnavailableError
    from digest.send import SendReport, TooManySendErrors

    assert exit_code_for(TooManySendErrors("stopped", SendReport(WED))) == EXIT_SEND_STOPPED
    assert exit_code_for(ListingFormatError("x")) == EXIT_USER_ERROR
    assert exit_code_for(ModelUnavailableError("x")) == EXIT_USER_ERROR
    assert exit_code_for(RuntimeError("x")) == EXIT_FAILED


@pytest.fixture(scope="module")
def prefect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prefect server for the module's `digest run` subprocesses (PREFECT_API_URL)."""
    from prefect.settings import PREFECT_HOME, temporary_settings

    from flows.prefect_api import prefect_api

    with temporary_settings({PREFECT_HOME: tmp_path_factory.mktemp("prefect-home")}):
        with prefect_api(scheduler=False) as api:
            yield api.url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def digest_run(prefect_url: str, settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": prefect_url, **settings_env}
    return subprocess.run([str(DIGEST), "run", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def run_env(db_url: str, hf_server: HfScript, smtp_port: int) -> dict[str, str]:
    from digest.pipeline import open_store

    open_store(bare_settings(database_url=db_url))
    add_reader(bare_settings(database_url=db_url), "ada@example.org")
    return {
        "DIGEST_DATABASE_URL": db_url, "DIGEST_HF_BASE_URL": hf_server.base, "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp_port), "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_HTTP_MAX_ATTEMPTS": "1", "DIGEST_REFETCH_MAX_DAYS": "0",
        "DIGEST_SEND_MAX_CONSECUTIVE_ERRORS": "2", "DIGEST_SEND_RETRY_INITIAL": "0.1",
        "DIGEST_SMTP_TIMEOUT": "2",
    }


@pytest.fixture
def smtp_port() -> int:
    return closed_port()  # nothing listens: "SMTP down"


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.mark.slow
def test_broken_listing_is_one_line_exit_2(prefect_url: str, run_env: dict[str, str], hf_server: HfScript) -> None:
    broken = json.loads(items_for(WED, SOURCE))
    del broken[4]["paper"]["summary"]
    hf_server.answers["/api/daily_papers"] = [(200, {}, json.dumps(broken).encode())]
    hf_server.answers[f"/papers/date/{WED}"] = [(200, {}, b"<html><body>maintenance</body></html>")]
    result = digest_run(prefect_url, run_env, "--date", WED.isoformat())
    assert result.returncode == 2, result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr
    assert "missing or empty 'summary'" in result.stderr and "Traceback" not in result.stdout + result.stderr
    verbose = digest_run(prefect_url, run_env, "--date", WED.isoformat(), "--verbose")
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and len(lines(verbose.stderr)) > 10, "--verbose shows Prefect's records"


@pytest.mark.slow
def test_smtp_down_is_one_line_exit_3(prefect_url: str, run_env: dict[str, str], hf_server: HfScript) -> None:
    hf_server.answers["/api/daily_papers"] = [(200, {}, items_for(WED, SOURCE))]
    result = digest_run(prefect_url, run_env, "--date", WED.isoformat())
    assert result.returncode == 3, result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr
    assert "send errors in a row" in result.stderr


@pytest.mark.slow
def test_an_empty_weekday_exits_4_an_empty_weekend_0(prefect_url: str, run_env: dict[str, str],
                                                     hf_server: HfScript) -> None:
    hf_server.answers["/api/daily_papers"] = [(200, {}, b"[]")]
    weekday = digest_run(prefect_url, run_env, "--date", WED.isoformat())
    assert weekday.returncode == 4, weekday.stderr
    assert lines(weekday.stderr) == [next(ln for ln in lines(weekday.stderr) if ln.startswith("warning:"))]
    assert "Wednesday" in weekday.stderr and "weekday" in weekday.stdout
    weekend = digest_run(prefect_url, run_env, "--date", SAT.isoformat())
    assert weekend.returncode == 0, weekend.stderr
    assert weekend.stderr.strip() == "" and "weekend" in weekend.stdout
    env = {**os.environ, "PREFECT_API_URL": prefect_url, **run_env}
    status = subprocess.run([str(DIGEST), "status"], env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    runs = status.stdout.split("Prefect flow runs of daily-digest", 1)[1].split("Outbox on", 1)[0]
    assert "NoListing" in runs and "Wednesday" in runs and "Completed" in runs, status.stdout
