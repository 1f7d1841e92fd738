"""trials.fusion_flops: FLOPs of one clip's forward pass through a trial's trained network

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows imported before the column existed keep null: not counted.
    with op.batch_alter_table("trials") as batch:  # SQLite cannot ALTER most things: batch mode copies
        batch.add_column(sa.Column("fusion_flops", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("fusion_flops")
