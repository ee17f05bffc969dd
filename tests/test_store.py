"""The store on SQLite and PostgreSQL: migrations from empty, upsert by arXiv id, upvote history."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import func, inspect, select, text

from digest import pipeline
from digest.models import InvalidAddressError
from digest.config import Settings
from digest.models import SubscriberStatus
from digest.sources.huggingface import load_listing_file, parse_api
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.db import current_revision
from digest.store.papers import count_papers, list_papers, upvote_history
from digest.store.subscribers import (
    SubscriberExistsError,
    add_subscriber,
    get_subscriber,
    list_subscribers,
    remove_subscriber,
)
from digest.store.tables import PaperRow, UpvoteRow

from .builders import API_2025_06_05

pytestmark = pytest.mark.all_backends
DAY = API_2025_06_05


def test_migrations_run_from_empty(db_url: str) -> None:
    engine = create_db_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) is not None
    tables = set(inspect(engine).get_table_names())
    assert {"papers", "paper_upvotes", "subscribers", "alembic_version"} <= tables
    upgrade(engine)  # idempotent
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_refetching_a_day_adds_no_rows_and_grows_history(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    first = pipeline.store(engine, load_listing_file(DAY))
    assert (first.report.new, first.report.updated) == (30, 0)

    again = pipeline.store(engine, load_listing_file(DAY))
    assert (again.report.new, again.report.updated, again.report.unchanged) == (0, 0, 30)

    # Later the same day: upvotes moved on two papers.
    items = json.loads(DAY.read_text())
    items[0]["paper"]["upvotes"] += 7
    items[5]["paper"]["upvotes"] += 1
    later = pipeline.store(engine, parse_api(json.dumps(items), "later", None))
    assert (later.report.new, later.report.updated, later.report.unchanged) == (0, 2, 28)

    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(PaperRow)) == 30
        top = items[0]["paper"]
        assert list(upvote_history(s, top["id"])) == [top["upvotes"] - 7, top["upvotes"]]
        assert s.scalar(select(func.count()).select_from(UpvoteRow)) == 32
        stored = s.get(PaperRow, top["id"])
        assert stored is not None and stored.upvotes == top["upvotes"]


def test_changed_abstract_changes_content_hash(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(DAY)
    pipeline.store(engine, listing)
    p = listing.papers[3]
    edited = dataclasses.replace(listing, papers=(dataclasses.replace(p, abstract=p.abstract + " Revised."),))
    report = pipeline.store(engine, edited).report
    assert report.updated == 1
    with session_factory(engine)() as s:
        row = s.get(PaperRow, p.arxiv_id)
        assert row is not None and row.content_hash != p.content_hash and row.abstract.endswith("Revised.")


def test_a_paper_listed_again_later_stays_one_row(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    listing = load_listing_file(DAY)
    pipeline.store(engine, listing)
    p = listing.papers[0]
    next_day = dataclasses.replace(listing, papers=(dataclasses.replace(p, listing_date=p.listing_date.replace(day=6)),))
    assert pipeline.store(engine, next_day).report.new == 0
    with session_factory(engine)() as s:
        assert count_papers(s) == 30
        assert list_papers(s, p.listing_date)[0].arxiv_id == p.arxiv_id


def test_subscribers_are_validated_and_unique(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s:
        sub = add_subscriber(s, "  Ada@Example.ORG ", interests=["video diffusion", " video  diffusion", "LLM reasoning"],
                             seed_papers=["2506.01234v2"])
        assert sub.email == "ada@example.org"
        assert sub.interests == ("video diffusion", "LLM reasoning")
        assert sub.seed_papers == ("2506.01234",)
        assert sub.status is SubscriberStatus.active
    with session_factory(engine).begin() as s, pytest.raises(SubscriberExistsError):
        add_subscriber(s, "ada@example.org")
    for bad in ["no-at-sign", "a@b", "x@example.com\r\nBcc: victim@example.com", ""]:
        with session_factory(engine).begin() as s, pytest.raises(InvalidAddressError):
            add_subscriber(s, bad)
    with session_factory(engine).begin() as s, pytest.raises(InvalidAddressError, match="line break"):
        add_subscriber(s, "bob@example.org", name="Bob\r\nBcc: x@example.com")
    with session_factory(engine).begin() as s:
        assert [x.email for x in list_subscribers(s)] == ["ada@example.org"]
        assert get_subscriber(s, "ADA@example.org").interests == ("video diffusion", "LLM reasoning")
        remove_subscriber(s, "ada@example.org")
        assert list_subscribers(s) == []
