"""the precision of a vector is part of its cache key (paper and interest embeddings), and the BM25
reference statistics of the store are cached (lexicon_stats)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEYS = {"paper_embeddings": ["arxiv_id", "model"], "interest_embeddings": ["text_hash", "model"]}


def upgrade() -> None:
    for table, key in _KEYS.items():
        # Every vector stored so far was computed in float32 unless bf16 was switched on, and nothing
        # recorded which: the server default marks them fp32, and a bf16 run re-encodes what it needs.
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("precision", sa.String(8), nullable=False, server_default="fp32"))
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", [*key, "precision"])
    op.create_table(
        "lexicon_stats",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("n_docs", sa.Integer(), nullable=False),
        sa.Column("total_len", sa.Integer(), nullable=False),
        sa.Column("doc_freq", sa.JSON(), nullable=False),
        sa.Column("through", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_lexicon_stats"),
    )


def downgrade() -> None:
    op.drop_table("lexicon_stats")
    for table, key in _KEYS.items():
        op.execute(f"DELETE FROM {table} WHERE precision <> 'fp32'")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)
            batch.drop_column("precision")
