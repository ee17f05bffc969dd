"""Data shipped with the package: a real Hugging Face listing snapshot for the demo and offline runs.

``listing_2026-08-18.json`` is a byte-for-byte copy of ``tests/fixtures/hf/api_daily_papers_2026-08-18.collector.json``
(see that folder's PROVENANCE.md): the API answer for 2026-08-18, 29 papers."""

from importlib.resources import files
from pathlib import Path

SNAPSHOT_NAME = "listing_2026-08-18.json"


def snapshot_path() -> Path:
    return Path(str(files(__name__).joinpath(SNAPSHOT_NAME)))
