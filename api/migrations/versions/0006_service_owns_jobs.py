"""The service owns its jobs (issue 15): queue, quotas, attempts, usage, notices, notifications

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_USER_COLUMNS = [
    ("max_running_jobs", sa.Integer()), ("max_gpus", sa.Double()), ("max_gpu_hours", sa.Double()),
    ("notify_secret", sa.String(64)),
]
_JOB_COLUMNS = [
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("queue_reason", sa.Text(), nullable=True),
    sa.Column("gpus", sa.Double(), nullable=False, server_default="0"),
    sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts_json", sa.Text(), nullable=False, server_default="[]"),
    sa.Column("auto_resumes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("gpu_seconds", sa.Double(), nullable=False, server_default="0"),
    sa.Column("cpu_seconds", sa.Double(), nullable=False, server_default="0"),
    sa.Column("lost_gpu_seconds", sa.Double(), nullable=False, server_default="0"),
    sa.Column("lost_cpu_seconds", sa.Double(), nullable=False, server_default="0"),
    sa.Column("notice", sa.Text(), nullable=True),
    sa.Column("notify_url", sa.Text(), nullable=True),
    sa.Column("notify_status", sa.String(16), nullable=True),
    sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("notify_next_at", sa.DateTime(timezone=True), nullable=True),
]
_TRIAL_COLUMNS = [
    ("gpus", sa.Double()), ("cpus", sa.Double()), ("gpu_seconds", sa.Double()), ("cpu_seconds", sa.Double()),
    ("lost_gpu_seconds", sa.Double()), ("lost_cpu_seconds", sa.Double()), ("attempts", sa.Integer()),
]


def upgrade() -> None:
    # Jobs and rows from before keep zeros and nulls: not recorded then.
    # users: plain ALTERs (SQLite ≥ 3.35 adds and drops columns itself): a batch copy would drop
    # the table that jobs and tokens refer to
    with op.batch_alter_table("users", recreate="never") as batch:
        for name, kind in _USER_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("jobs") as batch:
        for column in _JOB_COLUMNS:
            batch.add_column(column)
        batch.create_index("ix_jobs_queue", ["status", "priority"])
    # A job that already has a Ray job went past the queue (before it existed, every job did at once)
    op.execute("UPDATE jobs SET admitted_at = created_at WHERE ray_job_id IS NOT NULL")
    with op.batch_alter_table("trials") as batch:
        for name, kind in _TRIAL_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        for name, _ in _TRIAL_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_queue")
        for column in _JOB_COLUMNS:
            batch.drop_column(column.name)
    with op.batch_alter_table("users", recreate="never") as batch:
        for name, _ in _USER_COLUMNS:
            batch.drop_column(name)
