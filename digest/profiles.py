"""Subscriber profiles: each interest, seed paper and liked paper is its own positive vector (relevance is
the max over them, not the mean); negative interests and disliked papers are negative vectors.

Built in batch for all subscribers: every interest text of every subscriber is encoded in one call
(deduplicated, and cached in the store by text hash), seed/liked papers use their stored paper vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy.orm import Session

from digest.embed import Embedder, encode_texts, stored_paper_vectors
from digest.models import Subscriber
from digest.rank import Profile
from digest.store.feedback import feedback_for


def profile_from_vectors(
    sub: Subscriber,
    text_vectors: Mapping[str, np.ndarray],
    paper_vecs: Mapping[str, np.ndarray],
    feedback: Sequence[tuple[str, int]] = (),
    dim: int = 384,
) -> Profile:
    """One subscriber's profile from already computed vectors (pure). Seeds/liked papers without a
    stored vector are skipped."""
    pos: list[np.ndarray] = []
    reasons: list[str] = []
    neg: list[np.ndarray] = []
    neg_keys: list[str] = []
    for text in sub.interests:
        if text in text_vectors:
            pos.append(text_vectors[text])
            reasons.append(f"interest: {text}")
    for aid in sub.seed_papers:
        if aid in paper_vecs:
            pos.append(paper_vecs[aid])
            reasons.append(f"seed paper: {aid}")
    for text in sub.negative_interests:
        if text in text_vectors:
            neg.append(text_vectors[text])
            neg_keys.append(f"not: {text}")
    for aid, value in feedback:
        if aid not in paper_vecs:
            continue
        if value > 0:
            pos.append(paper_vecs[aid])
            reasons.append(f"liked: {aid}")
        elif value < 0:
            neg.append(paper_vecs[aid])
            neg_keys.append(f"disliked: {aid}")

    def stack(vs: list[np.ndarray]) -> np.ndarray:
        return np.stack(vs).astype(np.float32, copy=False) if vs else np.zeros((0, dim), np.float32)

    if sub.id is None:
        raise ValueError(f"subscriber {sub.email} has no id (not stored)")
    return Profile(
        subscriber_id=sub.id, positives=stack(pos), reasons=tuple(reasons), negatives=stack(neg),
        include_keywords=sub.include_keywords, exclude_keywords=sub.exclude_keywords,
        max_papers=sub.max_papers,
        negative_keys=tuple(neg_keys),
        seen=frozenset(sub.seed_papers) | frozenset(a for a, _ in feedback),
    )


def build_profiles(
    session: Session | None,
    subscribers: Sequence[Subscriber],
    embedder: Embedder,
    feedback: Mapping[int, Sequence[tuple[str, int]]] | None = None,
) -> list[Profile]:
    """Profiles of ``subscribers``: one ``encode`` call for all interest texts not cached yet.

    ``feedback`` defaults to the votes stored in the ``feedback`` table (``session`` required then);
    ``session=None`` uses no cache and no stored paper vectors (seeds and likes are then skipped)."""
    texts = [t for s in subscribers for t in (*s.interests, *s.negative_interests)]
    text_vecs = encode_texts(session, embedder, texts) if texts else {}
    if feedback is None:
        ids = [s.id for s in subscribers if s.id is not None]
        feedback = feedback_for(session, ids) if session is not None else {}
    wanted = {a for s in subscribers for a in s.seed_papers}
    wanted |= {a for s in subscribers for a, _ in feedback.get(s.id or -1, ())}
    paper_vecs = stored_paper_vectors(session, embedder, wanted) if (session is not None and wanted) else {}
    dim = next(iter(text_vecs.values())).shape[0] if text_vecs else (
        next(iter(paper_vecs.values())).shape[0] if paper_vecs else 384
    )
    return [
        profile_from_vectors(s, text_vecs, paper_vecs, feedback.get(s.id or -1, ()), dim) for s in subscribers
    ]
