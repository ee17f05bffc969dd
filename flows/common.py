"""What the flows share: the store of this process, one migrated engine per database URL."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from digest import pipeline
from digest.config import Settings


@lru_cache(maxsize=4)
def _engine(database_url: str) -> Engine:
    return pipeline.open_store(Settings(database_url=database_url))


def engine_for(settings: Settings) -> Engine:
    """The engine of ``settings.database_url``, migrated once per process (tasks share it)."""
    return _engine(settings.database_url)
