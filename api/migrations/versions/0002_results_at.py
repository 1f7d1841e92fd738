"""jobs.results_at: when the job's trial rows were last replaced

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows imported before this column existed get their job's last update as their version.
    with op.batch_alter_table("jobs") as batch:  # SQLite cannot ALTER most things: batch mode copies
        batch.add_column(sa.Column("results_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET results_at = updated_at WHERE id IN (SELECT DISTINCT job_id FROM trials)")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("results_at")
