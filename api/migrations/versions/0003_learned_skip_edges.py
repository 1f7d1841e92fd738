"""trials.learned and trials.skip_edges: whether a search's supernet learned; a genotype's skip edges

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows imported before these columns existed keep null: not measured.
    with op.batch_alter_table("trials") as batch:  # SQLite cannot ALTER most things: batch mode copies
        batch.add_column(sa.Column("learned", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("skip_edges", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("skip_edges")
        batch.drop_column("learned")
