"""The explanations' sentences are the embed step's work, on SQLite and PostgreSQL with the real model: after
``pipeline.embed`` of a day (what the daily flow's embed step runs), planning that day encodes nothing at
all, and reads every sentence from the cache; a paper the embed step never reached (stored by an older
version) is still explained, its sentences encoded at plan time, counted and warned about."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import numpy as np
import pytest
from sqlalchemy import Engine, delete, select

from digest import pipeline
from digest.config import Settings
from digest.embed import Embedder
from digest.explain import deciding_interest, split_sentences
from digest.models import Listing
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryItemRow, DeliveryRow, SentenceEmbeddingRow

from .builders import API_2025_06_05

pytestmark = pytest.mark.all_backends
DAY = date(2025, 6, 5)
INTERESTS = {"ada@example.org": ["LLM reasoning with reinforcement learning", "long-context language models"],
             "bob@example.org": ["video generation", "image editing with diffusion models"],
             "cy@example.org": ["vision-language models"]}


class CountingEmbedder(Embedder):
    """The real embedder, which also records how many texts each ``encode`` call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return super().encode(texts)


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()  # the model itself is loaded once per process


def _day(settings: Settings, embedder: CountingEmbedder) -> tuple[Engine, Listing]:
    """Ten papers of the real 2025-06-05 listing stored, three readers with their interests cached (as
    written by `subscribers add`), nothing embedded of the papers yet."""
    engine = pipeline.open_store(settings)
    full = load_listing_file(API_2025_06_05)
    listing = Listing(full.listing_date, full.papers[:10], full.source)
    pipeline.store(engine, listing)
    with session_factory(engine).begin() as s:
        for email, interests in INTERESTS.items():
            add_subscriber(s, email, interests=interests, max_papers=4)
    pipeline.embed_interests(engine, settings, [t for ts in INTERESTS.values() for t in ts], embedder=embedder)
    return engine, listing


def _rows(engine: Engine) -> dict[str, tuple[str, int, object]]:
    """arXiv id -> (content hash, number of sentences, created_at) of the sentence cache."""
    with session_factory(engine)() as s:
        return {a: (h, len(ss), c) for a, h, ss, c in s.execute(
            select(SentenceEmbeddingRow.arxiv_id, SentenceEmbeddingRow.content_hash, SentenceEmbeddingRow.sentences,
                   SentenceEmbeddingRow.created_at))}


def _items(engine: Engine) -> list[tuple[str, str, str | None]]:
    with session_factory(engine)() as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            select(DeliveryItemRow.arxiv_id, DeliveryItemRow.reason, DeliveryItemRow.evidence)
            .join(DeliveryRow, DeliveryRow.id == DeliveryItemRow.delivery_id).where(DeliveryRow.digest_date == DAY))]


def test_after_the_embed_step_planning_encodes_nothing(settings: Settings, embedder: CountingEmbedder) -> None:
    engine, listing = _day(settings, embedder)
    expected = {p.arxiv_id: len(split_sentences(p.abstract)) for p in listing.papers}
    assert sum(expected.values()) > 5 * len(expected)  # real abstracts: several sentences each

    embedder.calls.clear()
    done = pipeline.embed(engine, settings, DAY, DAY, embedder=embedder)
    assert done == pipeline.EmbedResult(len(listing.papers), sum(expected.values()))
    # Batched: one encode for the papers, one for all their sentences; one bulk insert of every paper's row.
    assert embedder.calls == [len(listing.papers), sum(expected.values())]
    cached = _rows(engine)
    assert {a: n for a, (_, n, _) in cached.items()} == expected
    assert {a: h for a, (h, _, _) in cached.items()} == {p.arxiv_id: p.content_hash for p in listing.papers}
    assert pipeline.embed(engine, settings, DAY, DAY, embedder=embedder) == pipeline.EmbedResult(0, 0)

    embedder.calls.clear()
    planned = pipeline.plan(engine, settings, DAY, embedder=embedder)
    assert embedder.calls == [], "planning encoded something"
    assert (planned.planned, planned.embedded, planned.interests_embedded, planned.sentences_embedded) == (3, 0, 0, 0)
    assert _rows(engine) == cached, "no sentence row was written again"
    items = _items(engine)
    quoted = [(aid, ev) for aid, reason, ev in items if ev is not None]
    assert quoted, "the explanations came from the cache"
    for aid, ev in quoted:
        assert deciding_interest(next(r for a, r, e in items if a == aid and e == ev)) is not None
        assert any(s.startswith(ev.rstrip("…")) for s in split_sentences(
            next(p.abstract for p in listing.papers if p.arxiv_id == aid)))


def test_a_paper_the_embed_step_missed_is_encoded_at_plan_counted_and_warned(
        settings: Settings, embedder: CountingEmbedder, caplog: pytest.LogCaptureFixture) -> None:
    engine, listing = _day(settings, embedder)
    pipeline.embed(engine, settings, DAY, DAY, embedder=embedder)
    with session_factory(engine).begin() as s:  # as a store an older version filled: papers, no sentences
        s.execute(delete(SentenceEmbeddingRow))
    embedder.calls.clear()
    with caplog.at_level(logging.WARNING, logger="digest.pipeline"):
        planned = pipeline.plan(engine, settings, DAY, embedder=embedder)
    assert planned.planned == 3 and planned.sentences_embedded > 0
    redone = _rows(engine)
    explained = {a for a, reason, _ in _items(engine) if deciding_interest(reason) is not None}
    assert set(redone) == explained, "only the papers an interest picked are split at plan time"
    assert planned.sentences_embedded == sum(n for _, n, _ in redone.values())
    assert embedder.calls == [planned.sentences_embedded], "one encode call for all of them"
    assert any(f"encoded {planned.sentences_embedded} sentences" in r.getMessage() for r in caplog.records)
    # The embed step then fills in the rest of the day, and planning again encodes nothing.
    rest = pipeline.embed(engine, settings, DAY, DAY, embedder=embedder)
    assert rest.papers == 0 and rest.sentences == sum(
        len(split_sentences(p.abstract)) for p in listing.papers if p.arxiv_id not in explained)
