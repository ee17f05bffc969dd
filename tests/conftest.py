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
SHARED = Path(os.environ.get("DIGEST_SHARED_DIR", ROOT.parent / "shared"))
HF_FIXTURES = SHARED / "fixtures" / "hf"
CORPUS = SHARED / "fixtures" / "corpus" / "papers-a.jsonl"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


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
