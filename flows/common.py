"""What the flows share: the settings and the store of this process."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from digest import pipeline
from digest.config import Settings


def settings() -> Settings:
    return Settings()


@lru_cache(maxsize=4)
def engine_for(database_url: str) -> Engine:
    """One migrated engine per database URL and process (tasks share it instead of re-migrating)."""
    return pipeline.open_store(Settings(database_url=database_url))
