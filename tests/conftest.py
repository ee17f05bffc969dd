from __future__ import annotations

import os
from pathlib import Path

# Prefect offline and quiet in tests (set before anything imports prefect).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from digest.config import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # real data, copied into the repository (see its README.md)
HF_FIXTURES = FIXTURES / "hf"
CORPUS = FIXTURES / "corpus" / "papers-a.jsonl"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file per test; or, with DIGEST_TEST_DATABASE_URL set (e.g. a PostgreSQL database
    made for the purpose), that database emptied before the test: the same suite checks another backend."""
    other = os.environ.get("DIGEST_TEST_DATABASE_URL")
    if not other:
        return f"sqlite:///{tmp_path / 'digest.db'}"
    from sqlalchemy import create_engine, text

    engine = create_engine(other)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return other


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        outbox_dir=str(tmp_path / "outbox"),
        http_backoff_initial=0.05,
        http_backoff_max=0.2,
        http_total_timeout=20,
        _env_file=None,  # type: ignore[call-arg]
    )
