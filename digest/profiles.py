"""What the ranking needs from the store: subscriber profiles and the candidate papers.

A profile: each interest and seed paper is its own positive vector (relevance is the max over them, not
the mean), with its lexical terms (BM25n against the store's lexicon, ``digest.bm25``); negative interests
are negative vectors; votes ("more / less like this") are the voted papers' vectors with a signed weight
that halves every ``VOTE_HALF_LIFE_DAYS`` (the ranking turns them into a bounded, local effect).

Built in batch for all subscribers: every interest text of every subscriber is encoded in one call
(deduplicated, and cached in the store by text hash), seed and voted papers use their stored vectors (a
stored paper without one, e.g. a seed fetched outside any listing, is encoded first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
from sqlalchemy.orm import Session

from digest.bm25 import NO_TERMS, Lexicon, QueryTerms, document
from digest.embed import Embedder, embed_missing, encode_texts, stored_paper_vectors
from digest.lexicon import store_lexicon
from digest.models import Paper, Subscriber
from digest.rank import PaperMatrix, Profile, follow_key
from digest.store.feedback import votes_for
from digest.store.papers import papers_by_ids
from digest.store.upvotes import upvote_rises

# A vote's weight halves every 30 days and is dropped below 1/16 (after four months): recent taste
# counts, an old click fades out.
VOTE_HALF_LIFE_DAYS = 30.0
VOTE_MIN_WEIGHT = 1 / 16
# Seed papers get the lexical half too: on the labelled seed-paper task (bench/ranking_quality.py) the
# hybrid finds a seed's neighbours better than cosine alone.
SEED_TERMS = True

Vote = tuple[str, int] | tuple[str, int, datetime]


def vote_weight(value: int, when: datetime | None, now: datetime) -> float:
    """+-1, halved every ``VOTE_HALF_LIFE_DAYS`` of age (a vote without a time counts as new)."""
    if when is None:
        return float(value)
    age = max((now - when).total_seconds(), 0.0) / 86400.0
    return float(value) * 0.5 ** (age / VOTE_HALF_LIFE_DAYS)


def profile_from_vectors(
    sub: Subscriber,
    text_vectors: Mapping[str, np.ndarray],
    paper_vecs: Mapping[str, np.ndarray],
    feedback: Sequence[Vote] = (),
    dim: int = 384,
    *,
    terms: Mapping[str, QueryTerms] | None = None,
    now: datetime | None = None,
) -> Profile:
    """One subscriber's profile from already computed vectors (pure). Seeds and voted papers without a
    stored vector are skipped. ``terms``: the lexical side of interest texts and seed ids (absent: cosine
    only); ``feedback``: (arxiv_id, +1|-1[, when]) votes."""
    terms = terms or {}
    now = now or datetime.now(timezone.utc)
    pos: list[np.ndarray] = []
    reasons: list[str] = []
    pos_terms: list[QueryTerms] = []
    neg: list[np.ndarray] = []
    neg_keys: list[str] = []
    for text in sub.interests:
        if text in text_vectors:
            pos.append(text_vectors[text])
            reasons.append(f"interest: {text}")
            pos_terms.append(terms.get(text, NO_TERMS))
    for aid in sub.seed_papers:
        if aid in paper_vecs:
            pos.append(paper_vecs[aid])
            reasons.append(f"seed paper: {aid}")
            pos_terms.append(terms.get(aid, NO_TERMS))
    for text in sub.negative_interests:
        if text in text_vectors:
            neg.append(text_vectors[text])
            neg_keys.append(f"not: {text}")
    votes: list[np.ndarray] = []
    weights: list[float] = []
    vote_reasons: list[str] = []
    for vote in feedback:
        aid, value = vote[0], vote[1]
        if aid not in paper_vecs or value not in (1, -1):
            continue
        w = vote_weight(value, vote[2] if len(vote) > 2 else None, now)  # type: ignore[misc]
        if abs(w) < VOTE_MIN_WEIGHT:
            continue
        votes.append(paper_vecs[aid])
        weights.append(w)
        vote_reasons.append(f"liked: {aid}" if value > 0 else f"disliked: {aid}")

    def stack(vs: list[np.ndarray]) -> np.ndarray:
        return np.stack(vs).astype(np.float32, copy=False) if vs else np.zeros((0, dim), np.float32)

    if sub.id is None:
        raise ValueError(f"subscriber {sub.email} has no id (not stored)")
    return Profile(
        subscriber_id=sub.id, positives=stack(pos), reasons=tuple(reasons), negatives=stack(neg),
        include_keywords=sub.include_keywords, exclude_keywords=sub.exclude_keywords,
        max_papers=sub.max_papers,
        negative_keys=tuple(neg_keys),
        seen=frozenset(sub.seed_papers) | frozenset(v[0] for v in feedback),
        terms=tuple(pos_terms) if any(pos_terms) else (),
        votes=stack(votes) if votes else None, vote_weights=tuple(weights), vote_reasons=tuple(vote_reasons),
        follows=tuple(dict.fromkeys([*(follow_key("org", o) for o in sub.follow_orgs),
                                     *(follow_key("author", a) for a in sub.follow_authors)])),
        only_with_code=sub.only_with_code,
    )


def build_profiles(
    session: Session | None,
    subscribers: Sequence[Subscriber],
    embedder: Embedder,
    feedback: Mapping[int, Sequence[Vote]] | None = None,
    *,
    lexicon: Lexicon | None = None,
    now: datetime | None = None,
    text_vectors: Mapping[str, np.ndarray] | None = None,
) -> list[Profile]:
    """Profiles of ``subscribers``: one ``encode`` call for all interest texts not cached yet, or the
    vectors of ``text_vectors`` as they are (a planner encodes the missing ones first: an interest without
    a vector there is left out).

    ``feedback`` defaults to the votes stored in the ``feedback`` table (``session`` required then);
    ``lexicon`` to the store's (``digest.lexicon``). ``session=None`` uses no cache, no stored paper
    vectors (seeds and votes are then skipped) and, without a ``lexicon``, cosine only."""
    texts = [t for s in subscribers for t in (*s.interests, *s.negative_interests)]
    if text_vectors is not None:
        text_vecs: Mapping[str, np.ndarray] = text_vectors
    else:
        text_vecs = encode_texts(session, embedder, texts) if texts else {}
    if feedback is None:
        ids = [s.id for s in subscribers if s.id is not None]
        feedback = votes_for(session, ids) if session is not None else {}
    seeds = {a for s in subscribers for a in s.seed_papers}
    wanted = seeds | {v[0] for s in subscribers for v in feedback.get(s.id or -1, ())}
    paper_vecs: Mapping[str, np.ndarray] = {}
    if session is not None and wanted:
        paper_vecs = stored_paper_vectors(session, embedder, wanted)
        if len(paper_vecs) < len(wanted):  # a seed fetched from anywhere, a vote on an old paper
            if embed_missing(session, embedder, sorted(wanted - paper_vecs.keys())):
                paper_vecs = stored_paper_vectors(session, embedder, wanted)
    if lexicon is None and session is not None:
        lexicon = store_lexicon(session)
    terms: dict[str, QueryTerms] = {}
    if lexicon is not None:
        for s in subscribers:
            for t in s.interests:
                if t not in terms:
                    terms[t] = lexicon.query(t)
        if SEED_TERMS and seeds and session is not None:
            for aid, p in papers_by_ids(session, seeds).items():
                terms[aid] = lexicon.query(document(p.title, p.abstract, p.ai_keywords))
    dim = next(iter(text_vecs.values())).shape[0] if text_vecs else (
        next(iter(paper_vecs.values())).shape[0] if paper_vecs else 384
    )
    now = now or datetime.now(timezone.utc)
    return [
        profile_from_vectors(s, text_vecs, paper_vecs, feedback.get(s.id or -1, ()), dim, terms=terms, now=now)
        for s in subscribers
    ]


def candidate_matrix(
    session: Session, papers: Sequence[Paper], vectors: Mapping[str, np.ndarray], *, now: datetime | None = None,
    rising_hours: float = 48.0,
) -> PaperMatrix:
    """The candidate papers as the ranking reads them: vectors, the lexical side against the store's
    lexicon, and the rising signal from their upvote history (the ``rising_hours`` before ``now``)."""
    now = now or datetime.now(timezone.utc)
    rises = upvote_rises(session, [p.arxiv_id for p in papers], now, rising_hours)
    return PaperMatrix.from_papers(papers, vectors, lexicon=store_lexicon(session), rises=rises)
