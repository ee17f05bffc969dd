"""a per-subscriber feed key: the Atom feed of a subscriber's picks works only while its URL carries the
stored key (NULL: no feed), so the preferences page can turn a feed URL off or replace it

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: nobody has a feed until they turn it on.
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("feed_key", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("feed_key")
