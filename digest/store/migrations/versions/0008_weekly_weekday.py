"""weekly digests on a weekday of the subscriber's choice: subscribers.weekday (0 = Monday, the weekday of the
digest date, a listing day); NULL for daily subscribers. Weekly subscribers stored before (the preferences
page offered "weekly" but every day was mailed) get Friday, the default.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FRIDAY = 4  # digest.models.DEFAULT_WEEKDAY when this migration was written; a migration keeps its own value


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("weekday", sa.SmallInteger(), nullable=True))
    subscribers = sa.table("subscribers", sa.column("frequency", sa.String), sa.column("weekday", sa.SmallInteger))
    op.execute(subscribers.update().where(subscribers.c.frequency == "weekly").values(weekday=FRIDAY))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("weekday")
