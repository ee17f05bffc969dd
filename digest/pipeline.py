"""The day as plain functions (fetch, store, ...), each taking and returning plain data.

``flows/`` wraps these in Prefect tasks; the CLI calls them directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from digest.config import Settings
from digest.models import Listing, UpsertReport
from digest.sources import huggingface
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.papers import upsert_papers


def open_store(settings: Settings, migrate: bool = True) -> Engine:
    """The engine for ``settings.database_url``, migrated to the newest schema."""
    engine = create_db_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return engine


def fetch(settings: Settings, day: date | None = None, from_file: str | Path | None = None) -> Listing:
    """One day's listing from Hugging Face, or a saved listing file. Raises ``ListingFormatError`` /
    ``FetchError``: nothing downstream runs on a listing that did not parse."""
    if from_file is not None:
        return huggingface.load_listing_file(from_file, day)
    if day is None:
        raise ValueError("fetch needs a date or a file")
    return huggingface.fetch_listing(day, settings)


@dataclass(frozen=True, slots=True)
class StoreResult:
    listing_date: date
    fetched: int
    report: UpsertReport


def store(engine: Engine, listing: Listing) -> StoreResult:
    """Upsert the listing's papers in one transaction."""
    with session_factory(engine).begin() as session:
        report = upsert_papers(session, listing.papers)
    return StoreResult(listing.listing_date, len(listing.papers), report)
