"""the outbox carries every mail: a delivery has a kind (digest or confirm), unique per subscriber, date
and kind

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="digest"))
        batch.drop_constraint("uq_deliveries_subscriber_id", type_="unique")
        batch.create_unique_constraint("uq_deliveries_subscriber_date_kind", ["subscriber_id", "digest_date", "kind"])
    op.create_index("ix_deliveries_kind_status", "deliveries", ["kind", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_kind_status", "deliveries")
    op.execute("DELETE FROM deliveries WHERE kind <> 'digest'")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_deliveries_subscriber_date_kind", type_="unique")
        batch.create_unique_constraint("uq_deliveries_subscriber_id", ["subscriber_id", "digest_date"])
        batch.drop_column("kind")
