"""The BM25 reference of the store: idf and average length over every stored paper (title, abstract, AI
keywords), never over the day's candidates, cached in the ``lexicon_stats`` table.

Kept up to date incrementally: each load tokenizes only the papers first seen since the cached statistics
(a day's listing: milliseconds) and saves the sum. When the count no longer adds up (papers deleted, or a
paper committed with an older ``first_seen`` than the cache's), everything is counted again (about 0.1 ms
a paper). A paper whose abstract changes later keeps the counts of its first text: a negligible drift.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from digest.bm25 import Lexicon, document
from digest.store.lexicon import LexiconStats, load_stats, paper_documents, save_stats
from digest.store.papers import count_papers

NAME = "bm25-en-1"  # the tokenizer's version: a new tokenizer gets a new name, hence a full recount
_INFO_KEY = "digest.lexicon"


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive (they are stored in UTC).
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def store_lexicon(session: Session) -> Lexicon:
    """The reference statistics of the stored papers, brought up to date (and saved) first. Memoised on
    the session: one ranking loads them once."""
    memo = session.info.get(_INFO_KEY)
    if memo is not None:
        return memo
    total = count_papers(session)
    stats = load_stats(session, NAME)
    lex: Lexicon | None = None
    through = _aware(stats.through) if stats is not None else None
    if stats is not None and stats.n_docs <= total:
        new = list(paper_documents(session, stats.through))
        if stats.n_docs + len(new) == total:
            lex = Lexicon(stats.n_docs, stats.total_len, stats.doc_freq)
            if new:
                lex = lex.updated(document(t, a, k) for t, a, k, _ in new)
                through = max(_aware(f) for *_, f in new)  # all newer than the cached ``through``
            else:
                session.info[_INFO_KEY] = lex
                return lex
    if lex is None:
        docs = list(paper_documents(session))
        lex = Lexicon.from_texts(document(t, a, k) for t, a, k, _ in docs)
        through = max((_aware(f) for *_, f in docs), default=None)
    save_stats(session, NAME, LexiconStats(lex.n_docs, lex.total_len, dict(lex.df), through))
    session.info[_INFO_KEY] = lex
    return lex
