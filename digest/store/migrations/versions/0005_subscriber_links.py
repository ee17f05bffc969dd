"""subscriber links: ids never reused (SQLite AUTOINCREMENT), a random link key per subscriber, when the
status last changed, and the preferences of a sign-up waiting for its confirmation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("link_key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pending_interests", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("pending_max_papers", sa.Integer(), nullable=True))

    bind = op.get_bind()
    subscribers = sa.table("subscribers", sa.column("id", sa.Integer()), sa.column("link_key", sa.String()),
                           sa.column("created_at", sa.DateTime(timezone=True)),
                           sa.column("confirmed_at", sa.DateTime(timezone=True)),
                           sa.column("status_changed_at", sa.DateTime(timezone=True)))
    ids = list(bind.execute(sa.select(subscribers.c.id)).scalars())
    for start in range(0, len(ids), 5000):  # every existing subscriber gets a key of its own
        bind.execute(
            subscribers.update().where(subscribers.c.id == sa.bindparam("sid"))
            .values(link_key=sa.bindparam("key")),
            [{"sid": i, "key": secrets.token_urlsafe(16)} for i in ids[start : start + 5000]],
        )
    bind.execute(subscribers.update().values(
        status_changed_at=sa.func.coalesce(subscribers.c.confirmed_at, subscribers.c.created_at)))

    # SQLite can only add AUTOINCREMENT by rebuilding the table (data and the other tables' foreign keys
    # kept: digest.store.db.upgrade runs migrations with foreign key enforcement off, so dropping the old
    # table cascades nowhere, and checks every foreign key before it commits). PostgreSQL's sequences
    # never hand an id out twice: there only the columns become NOT NULL.
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("link_key", existing_type=sa.String(32), nullable=False)
        batch.alter_column("status_changed_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", recreate="always" if sqlite else "auto") as batch:
        batch.drop_column("pending_max_papers")
        batch.drop_column("pending_interests")
        batch.drop_column("status_changed_at")
        batch.drop_column("link_key")
