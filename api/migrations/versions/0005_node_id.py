"""trials.node_id: the Ray node a trial's last epoch ran on

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows imported before the column existed keep null: not recorded.
    with op.batch_alter_table("trials") as batch:  # SQLite cannot ALTER most things: batch mode copies
        batch.add_column(sa.Column("node_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("node_id")
