"""trials.reused_from: a trial taken from an earlier job (the grid's reuse_from) rather than run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before the column existed keep null: run by their own job, as every trial was then.
    with op.batch_alter_table("trials") as batch:  # SQLite cannot ALTER most things: batch mode copies
        batch.add_column(sa.Column("reused_from", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("reused_from")
