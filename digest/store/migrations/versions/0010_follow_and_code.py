"""what a subscriber follows (labs by HF handle or display name, authors by name) and whether they want only
papers with code

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite and PostgreSQL both have it): a batch copy of ``subscribers`` would lose its
    # SQLite AUTOINCREMENT. NULL follows read as none (``row_to_subscriber``).
    op.add_column("subscribers", sa.Column("follow_orgs", sa.JSON(), nullable=True))
    op.add_column("subscribers", sa.Column("follow_authors", sa.JSON(), nullable=True))
    op.add_column("subscribers", sa.Column("only_with_code", sa.Boolean(), nullable=False,
                                           server_default=sa.false()))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", table_kwargs={"sqlite_autoincrement": True} if sqlite else {}) as batch:
        batch.drop_column("only_with_code")
        batch.drop_column("follow_authors")
        batch.drop_column("follow_orgs")
