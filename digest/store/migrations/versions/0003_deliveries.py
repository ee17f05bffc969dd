"""the outbox: deliveries (one per subscriber and digest date) and their items

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("digest_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name="fk_deliveries_subscriber_id_subscribers", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("subscriber_id", "digest_date", name="uq_deliveries_subscriber_id"),
    )
    op.create_index("ix_deliveries_date_status", "deliveries", ["digest_date", "status"])
    op.create_table(
        "delivery_items",
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("arxiv_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"],
                                name="fk_delivery_items_delivery_id_deliveries", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["arxiv_id"], ["papers.arxiv_id"], name="fk_delivery_items_arxiv_id_papers"),
        sa.PrimaryKeyConstraint("delivery_id", "rank", name="pk_delivery_items"),
        sa.UniqueConstraint("delivery_id", "arxiv_id", name="uq_delivery_items_delivery_id"),
    )
    op.create_index("ix_delivery_items_arxiv_id", "delivery_items", ["arxiv_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_items_arxiv_id", "delivery_items")
    op.drop_table("delivery_items")
    op.drop_index("ix_deliveries_date_status", "deliveries")
    op.drop_table("deliveries")
