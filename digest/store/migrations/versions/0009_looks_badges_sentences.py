"""what a listing says about a paper that was not kept (its lab's HF name, GitHub stars, media URLs), how a
subscriber wants the digest to look (thumbnails, plain text only), the sentence of the abstract shown
beside an interest, and the cache of abstract sentences and their vectors

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite and PostgreSQL both have it): a batch copy of ``subscribers`` would lose its
    # SQLite AUTOINCREMENT (ids of removed subscribers must never be given out again).
    # Papers stored before get these at their next fetch (a re-fetch of their day, or a backfill --refresh).
    op.add_column("papers", sa.Column("organization_name", sa.String(200), nullable=True))
    op.add_column("papers", sa.Column("github_stars", sa.Integer(), nullable=True))
    op.add_column("papers", sa.Column("media_urls", sa.JSON(), nullable=True))
    # Every subscriber so far got the HTML + text mail without images: that stays their default.
    op.add_column("subscribers", sa.Column("thumbnails", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("subscribers", sa.Column("plain_text", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("delivery_items", sa.Column("evidence", sa.Text(), nullable=True))
    op.create_table(
        "sentence_embeddings",
        sa.Column("arxiv_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("sentences", sa.JSON(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arxiv_id"], ["papers.arxiv_id"], name="fk_sentence_embeddings_arxiv_id_papers",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("arxiv_id", "model", "precision", name="pk_sentence_embeddings"),
    )


def downgrade() -> None:
    op.drop_table("sentence_embeddings")
    with op.batch_alter_table("delivery_items") as batch:
        batch.drop_column("evidence")
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", table_kwargs={"sqlite_autoincrement": True} if sqlite else {}) as batch:
        batch.drop_column("plain_text")
        batch.drop_column("thumbnails")
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("media_urls")
        batch.drop_column("github_stars")
        batch.drop_column("organization_name")
