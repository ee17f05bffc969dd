"""SQLAlchemy 2 typed ORM tables. Portable types only: the same schema runs on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timezone

from sqlalchemy import (
    JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, SmallInteger, String, Text,
    UniqueConstraint, false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_link_key() -> str:
    """A subscriber's link key: 128 random bits, URL-safe. Every signed link carries it (digest.signing)."""
    return secrets.token_urlsafe(16)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PaperRow(Base):
    __tablename__ = "papers"

    arxiv_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text)
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    listing_date: Mapped[date] = mapped_column(Date, index=True)
    upvotes: Mapped[int] = mapped_column(Integer, default=0)
    num_comments: Mapped[int] = mapped_column(Integer, default=0)
    ai_summary: Mapped[str | None] = mapped_column(Text)
    ai_keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    github_url: Mapped[str | None] = mapped_column(Text)
    project_url: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    organization: Mapped[str | None] = mapped_column(String(200))
    # Migration 0009: the rest of what a listing says about a paper, so that badges (and, later, following
    # labs or asking for code) need no new fetch.
    organization_name: Mapped[str | None] = mapped_column(String(200))  # the HF handle
    github_stars: Mapped[int | None] = mapped_column(Integer)
    media_urls: Mapped[list[str] | None] = mapped_column(JSON, default=list)  # NULL: stored before 0009
    content_hash: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    upvote_history: Mapped[list[UpvoteRow]] = relationship(
        back_populates="paper", cascade="all, delete-orphan", order_by="UpvoteRow.id"
    )


class UpvoteRow(Base):
    """One observation of a paper's upvotes: written when first seen and whenever the count changes."""

    __tablename__ = "paper_upvotes"
    __table_args__ = (Index("ix_paper_upvotes_paper_observed", "arxiv_id", "observed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    arxiv_id: Mapped[str] = mapped_column(ForeignKey("papers.arxiv_id", ondelete="CASCADE"))
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    upvotes: Mapped[int] = mapped_column(Integer)

    paper: Mapped[PaperRow] = relationship(back_populates="upvote_history")


class SubscriberRow(Base):
    __tablename__ = "subscribers"
    # SQLite: AUTOINCREMENT, so the id of a removed subscriber is never given to another one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    interests: Mapped[list[str]] = mapped_column(JSON, default=list)
    negative_interests: Mapped[list[str]] = mapped_column(JSON, default=list)
    include_keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    exclude_keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    seed_papers: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_papers: Mapped[int] = mapped_column(Integer, default=10)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Signed links carry this key; a link whose key is not the stored one does not work (digest.signing).
    link_key: Mapped[str] = mapped_column(String(32), default=new_link_key)
    # When ``status`` last changed: a confirmation link issued before it is stale.
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What a sign-up of a known address typed: applied when that sign-up is confirmed, never before.
    pending_interests: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    pending_max_papers: Mapped[int | None] = mapped_column(Integer)
    # The Atom feed of this subscriber's picks works only while its URL carries this key (digest.signing);
    # NULL: no feed. Random, rotated or cleared from the preferences page (migration 0009).
    feed_key: Mapped[str | None] = mapped_column(String(32))
    # frequency "weekly": the weekday (0 = Monday, date.weekday()) of the listing days whose digest they get;
    # NULL when daily (migration 0008). The weekday of the digest date, a date in DIGEST_TIMEZONE.
    weekday: Mapped[int | None] = mapped_column(SmallInteger)
    # How the digest looks (migration 0009): thumbnails in the HTML part; the text part alone.
    thumbnails: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    plain_text: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Follows and the code filter (migration 0010).
    follow_orgs: Mapped[list[str] | None] = mapped_column(JSON, default=list)  # NULL: stored before 0010
    follow_authors: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    only_with_code: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PaperEmbeddingRow(Base):
    """One paper's vector for one model, and the content hash of the text it was computed from."""

    __tablename__ = "paper_embeddings"

    arxiv_id: Mapped[str] = mapped_column(
        ForeignKey("papers.arxiv_id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The precision the model ran at ("fp32", "bf16"): part of the key, so switching DIGEST_EMBED_BF16
    # never mixes vectors of both precisions in one ranking (migration 0006).
    precision: Mapped[str] = mapped_column(String(8), primary_key=True, default="fp32", server_default="fp32")


class SentenceEmbeddingRow(Base):
    """One paper's abstract split into sentences, and their vectors for one model and precision: computed
    once (digest.explain), again only when the title or abstract changes (``content_hash``)."""

    __tablename__ = "sentence_embeddings"

    arxiv_id: Mapped[str] = mapped_column(
        ForeignKey("papers.arxiv_id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    precision: Mapped[str] = mapped_column(String(8), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    sentences: Mapped[list[str]] = mapped_column(JSON)
    dim: Mapped[int] = mapped_column(Integer)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)  # len(sentences) x dim float32, little-endian, unit rows
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InterestEmbeddingRow(Base):
    """Cache of interest-text vectors (sha256 of the text, model) -> float32 vector."""

    __tablename__ = "interest_embeddings"

    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    precision: Mapped[str] = mapped_column(String(8), primary_key=True, default="fp32", server_default="fp32")


class FeedbackRow(Base):
    """A subscriber's vote on a paper (+1 more like this, -1 less like this); the latest vote wins."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("subscriber_id", "arxiv_id", name="uq_feedback_subscriber_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    arxiv_id: Mapped[str] = mapped_column(ForeignKey("papers.arxiv_id", ondelete="CASCADE"))
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryRow(Base):
    """The outbox: every mail the product sends, one row per (subscriber, date, kind). ``kind`` is
    ``digest`` (the day's digest, with its items) or ``confirm`` (the double opt-in mail). Status:
    planned -> sending -> sent | failed; skipped when there was nothing to send."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "digest_date", "kind", name="uq_deliveries_subscriber_date_kind"),
        Index("ix_deliveries_date_status", "digest_date", "status"),
        Index("ix_deliveries_kind_status", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    digest_date: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16), default="digest", server_default="digest")
    status: Mapped[str] = mapped_column(String(16), default="planned")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    resends: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[DeliveryItemRow]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="DeliveryItemRow.rank"
    )


class DeliveryItemRow(Base):
    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("delivery_id", "arxiv_id", name="uq_delivery_items_delivery_id"),)

    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    arxiv_id: Mapped[str] = mapped_column(ForeignKey("papers.arxiv_id"), index=True)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    # The abstract's sentence that matches the deciding interest best (digest.explain), shown beside the
    # reason; NULL when no interest decided the pick (migration 0009).
    evidence: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[DeliveryRow] = relationship(back_populates="items")


class LexiconRow(Base):
    """BM25 reference statistics over the stored papers (digest.lexicon): how many papers, their total
    length in tokens, each token's document frequency, and up to which ``first_seen`` they are counted.
    One row per tokenizer (``name``); kept up to date incrementally as papers arrive."""

    __tablename__ = "lexicon_stats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    n_docs: Mapped[int] = mapped_column(Integer)
    total_len: Mapped[int] = mapped_column(Integer)
    doc_freq: Mapped[dict[str, int]] = mapped_column(JSON)
    through: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
