"""The product's BM25n (digest.bm25) against the bm25s library on the real 224-paper corpus, and the store's
lexicon (digest.lexicon): over the stored papers, cached, kept up to date as papers arrive."""

from __future__ import annotations

import json

import bm25s
import numpy as np
import Stemmer

from digest import pipeline
from digest.bm25 import Lexicon, bm25n, tokenize
from digest.config import Settings
from digest.sources.huggingface import load_listing_file

from .builders import CORPUS, HF_FIXTURES

PHRASES = ["multi-task learning", "RAG", "model merging", "sentence embeddings", "negative transfer",
           "the attention of attention models", "zzqx unknownword"]


def corpus_docs() -> list[str]:
    with open(CORPUS, encoding="utf-8") as f:
        return [f"{o['title']}. {o['abstract']}" for o in map(json.loads, f)]


def test_tokens_are_bm25s_tokens() -> None:
    docs = corpus_docs()
    ref = bm25s.tokenize(docs, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                         show_progress=False)
    assert [tokenize(d) for d in docs] == [list(t) for t in ref]


def test_bm25n_equals_bm25s_scores_over_the_max() -> None:
    """Reference = the corpus itself: BM25n x the query's idf sum is bm25s' Lucene BM25, paper by paper."""
    docs = corpus_docs()
    stem = Stemmer.Stemmer("english")
    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    index.index(bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    lex = Lexicon.from_texts(docs)
    assert lex.n_docs == len(docs)
    ours = bm25n([lex.query(p) for p in PHRASES], lex.papers(docs))
    assert ours.shape == (len(PHRASES), len(docs))
    assert (ours >= 0).all() and (ours < 1).all()
    for i, phrase in enumerate(PHRASES):
        toks = tokenize(phrase)
        top = sum(lex.idf(t) for t in toks)
        known = [t for t in toks if t in index.vocab_dict]
        want = np.asarray(index.get_scores(known), dtype=np.float32) if known else np.zeros(len(docs), np.float32)
        np.testing.assert_allclose(ours[i] * top, want, rtol=2e-4, atol=2e-5)
    assert ours[PHRASES.index("model merging")].max() > 0.5
    assert not ours[PHRASES.index("zzqx unknownword")].any()


def test_scores_do_not_depend_on_the_other_candidates() -> None:
    """A paper's BM25n is the same whether it is listed with 224 papers or alone: the day's pool plays no part."""
    docs = corpus_docs()
    lex = Lexicon.from_texts(docs)
    q = [lex.query(p) for p in PHRASES]
    full = bm25n(q, lex.papers(docs))
    for j in (0, 17, 200):
        np.testing.assert_allclose(bm25n(q, lex.papers([docs[j]]))[:, 0], full[:, j], rtol=1e-6)


def test_lexicon_updated_equals_built_at_once() -> None:
    docs = corpus_docs()
    a = Lexicon.from_texts(docs[:100]).updated(docs[100:])
    b = Lexicon.from_texts(docs)
    assert (a.n_docs, a.total_len, dict(a.df)) == (b.n_docs, b.total_len, dict(b.df))


def _stored_docs(engine) -> list[str]:  # type: ignore[no-untyped-def]
    from digest.bm25 import document
    from digest.store import session_factory
    from digest.store.papers import list_papers

    with session_factory(engine)() as session:
        return [document(p.title, p.abstract, p.ai_keywords) for p in list_papers(session)]


def test_store_lexicon_counts_the_stored_papers_and_follows_new_ones(settings: Settings) -> None:
    from sqlalchemy import delete

    from digest.lexicon import store_lexicon
    from digest.store import session_factory
    from digest.store.lexicon import load_stats
    from digest.store.tables import PaperRow

    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as session:
        empty = store_lexicon(session)
    assert empty.n_docs == 0 and empty.idf("model") > 0
    first = load_listing_file(HF_FIXTURES / "api_daily_papers_2025-06-05.collector.json")
    pipeline.store(engine, first)
    with session_factory(engine).begin() as session:
        lex = store_lexicon(session)
        assert store_lexicon(session) is lex  # memoised per session
    want = Lexicon.from_texts(_stored_docs(engine))
    assert (lex.n_docs, lex.total_len, dict(lex.df)) == (30, want.total_len, dict(want.df))
    pipeline.store(engine, load_listing_file(HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json"))
    with session_factory(engine).begin() as session:
        lex = store_lexicon(session)  # incremental: only the new listing is tokenized
        stats = load_stats(session, "bm25-en-1")
    want = Lexicon.from_texts(_stored_docs(engine))
    assert (lex.n_docs, lex.total_len, dict(lex.df)) == (59, want.total_len, dict(want.df))
    assert stats is not None and stats.n_docs == 59
    with session_factory(engine).begin() as session:  # a deleted paper: the counts no longer add up
        session.execute(delete(PaperRow).where(PaperRow.arxiv_id == first.papers[0].arxiv_id))
    with session_factory(engine).begin() as session:
        lex = store_lexicon(session)
    want = Lexicon.from_texts(_stored_docs(engine))
    assert (lex.n_docs, dict(lex.df)) == (58, dict(want.df))


def test_candidate_idf_comes_from_the_store_not_the_day(settings: Settings) -> None:
    """The lexical side of a day's papers uses the store's statistics: the same paper scores the same
    whichever other papers are candidates."""
    from digest.profiles import candidate_matrix
    from digest.store import session_factory

    engine = pipeline.open_store(settings)
    listing = load_listing_file(HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json")
    pipeline.store(engine, listing)
    pipeline.store(engine, load_listing_file(HF_FIXTURES / "api_daily_papers_2025-10-03.collector.json"))
    vecs = {p.arxiv_id: np.ones(4, np.float32) / 2 for p in listing.papers}
    with session_factory(engine).begin() as session:
        whole = candidate_matrix(session, listing.papers, vecs)
        alone = candidate_matrix(session, listing.papers[:1], vecs)
        q = [store_lexicon_query(session, "multimodal agents")]
    np.testing.assert_allclose(bm25n(q, alone.terms)[:, 0], bm25n(q, whole.terms)[:, 0])  # type: ignore[arg-type]
    assert bm25n(q, whole.terms).max() > 0.3  # type: ignore[arg-type]


def store_lexicon_query(session, text: str):  # type: ignore[no-untyped-def]
    from digest.lexicon import store_lexicon

    return store_lexicon(session).query(text)
