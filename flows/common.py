"""What the flows share: the store of this process, one migrated engine per database URL."""

from __future__ import annotations

from datetime import date
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


def unsent(settings: Settings, day: date) -> int:
    """How many deliveries of ``day`` are planned and not yet sent (this run's plan and any earlier one's)."""
    from digest.store import outbox, session_factory

    with session_factory(engine_for(settings))() as s:
        return outbox.status_counts(s, day).get(outbox.DeliveryStatus.planned.value, 0)
