"""Table models of the job store (SQLAlchemy 2, typed). API response models live elsewhere.

Types are chosen to behave the same on SQLite and PostgreSQL: timestamps are stored as UTC
and always read back tz-aware; floats are double precision; free text is ``Text``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.status import ACTIVE_STATUSES, JOB_STATUSES, JobStatus

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_STATUSES",
    "Base",
    "Job",
    "JobStatus",
    "Token",
    "TrialRow",
    "User",
    "UTCDateTime",
    "utcnow",
]


# Deterministic constraint names, so that migrations can name what they alter on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and read back tz-aware (SQLite keeps no zone, PostgreSQL does)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the job store keeps tz-aware UTC times only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Per-user quotas an admin set; null: the service's default (api/settings.py)
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    max_gpus: Mapped[float | None] = mapped_column(Double)  # GPUs held at once by the user's running jobs
    max_gpu_hours: Mapped[float | None] = mapped_column(Double)  # GPU-hours per 30 days
    notify_secret: Mapped[str | None] = mapped_column(String(64))  # HMAC key of the user's job notifications

    tokens: Mapped[list[Token]] = relationship(back_populates="user", passive_deletes=True)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, is_admin={self.is_admin!r})"


class Token(Base):
    """A bearer token: only its SHA-256 is stored, with a short prefix to recognise it in listings."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"Token(id={self.id!r}, prefix={self.prefix!r}, user_id={self.user_id!r})"


class Job(Base):
    """A submitted grid: its validated spec, where it runs, and how far it got."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "j" + 12 hex chars
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))  # the grid's name
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")  # one of JOB_STATUSES
    spec_json: Mapped[str] = mapped_column(Text)  # the validated GridSpec as JSON
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical submitted body
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    ray_job_id: Mapped[str | None] = mapped_column(String(128))  # Ray Jobs API submission id
    storage_dir: Mapped[str] = mapped_column(Text)
    n_trials: Mapped[int] = mapped_column(Integer)  # expected total over all stages
    progress_json: Mapped[str] = mapped_column(Text, default="{}")  # per-stage counts
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    results_at: Mapped[datetime | None]  # when its trial rows were last replaced (api/pages.py keys on it)
    # The queue (api/queue.py): higher first, then submission order; why a queued job waits
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    queue_reason: Mapped[str | None] = mapped_column(Text)
    gpus: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")  # GPUs it holds at once, running
    admitted_at: Mapped[datetime | None]  # when the queue last handed it to Ray
    # Driver attempts (api/service.py): JSON list of {attempt, at, reason, by}; automatic resumes so far
    attempts_json: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    auto_resumes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]  # an automatic resume waits until then (backoff)
    # Usage (api/usage.py): resource-seconds of every trial attempt; lost: of attempts whose work was redone
    gpu_seconds: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    cpu_seconds: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    lost_gpu_seconds: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    lost_cpu_seconds: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    notice: Mapped[str | None] = mapped_column(Text)  # stale trials, resources no node has: what needs a look
    # Notification of the job's end (api/notify.py): a POST to notify_url, signed, retried
    notify_url: Mapped[str | None] = mapped_column(Text)
    notify_status: Mapped[str | None] = mapped_column(String(16))  # pending | sent | failed
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notify_next_at: Mapped[datetime | None]

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (UniqueConstraint("owner_id", "idempotency_key"), Index("ix_jobs_queue", "status", "priority"))

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class TrialRow(Base):
    """One row of a job's result tables (trials/results.py RESULT_SCHEMA; ``job`` becomes ``job_id``).

    A search trial has two rows with the same ``trial_id``: stage "search" and stage "evaluation".
    """

    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_job_stage", "job_id", "stage"),
        Index("ix_trials_job_setting", "job_id", "operators", "discretization", "n_inputs", "n_cells"),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    trial_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    trial_key: Mapped[str] = mapped_column(String(255))
    operators: Mapped[str | None] = mapped_column(String(32))
    discretization: Mapped[str | None] = mapped_column(String(32))
    n_inputs: Mapped[int | None] = mapped_column(Integer)
    n_cells: Mapped[int | None] = mapped_column(Integer)
    modalities: Mapped[str | None] = mapped_column(String(255))  # "rgb+flow"
    repeat: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    val_loss: Mapped[float | None] = mapped_column(Double)
    val_top1: Mapped[float | None] = mapped_column(Double)
    test_top1: Mapped[float | None] = mapped_column(Double)
    fusion_params: Mapped[int | None] = mapped_column(BigInteger)
    total_params: Mapped[int | None] = mapped_column(BigInteger)
    fusion_flops: Mapped[int | None] = mapped_column(BigInteger)  # FLOPs of one clip's forward pass
    learned: Mapped[bool | None] = mapped_column(Boolean)  # search, evaluation: did the supernet learn
    skip_edges: Mapped[int | None] = mapped_column(Integer)  # the genotype's skip edges
    genotype: Mapped[str | None] = mapped_column(Text)  # Genotype JSON
    config: Mapped[str | None] = mapped_column(Text)  # the trial's config as JSON
    wall_seconds: Mapped[float | None] = mapped_column(Double)
    device: Mapped[str | None] = mapped_column(Text)  # host and accelerator
    node_id: Mapped[str | None] = mapped_column(String(64))  # the Ray node of the trial's last epoch
    # What the trial held and for how long (trials/usage.py): every attempt; lost: redone work
    gpus: Mapped[float | None] = mapped_column(Double)
    cpus: Mapped[float | None] = mapped_column(Double)
    gpu_seconds: Mapped[float | None] = mapped_column(Double)
    cpu_seconds: Mapped[float | None] = mapped_column(Double)
    lost_gpu_seconds: Mapped[float | None] = mapped_column(Double)
    lost_cpu_seconds: Mapped[float | None] = mapped_column(Double)
    attempts: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # "succeeded" | "failed"
    error: Mapped[str | None] = mapped_column(Text)
    reused_from: Mapped[str | None] = mapped_column(Text)  # "<source job dir>#<trial id>": not run here

    def to_dict(self) -> dict[str, Any]:
        """The row as RESULT_SCHEMA names it (``job`` rather than ``job_id``)."""
        row = {c.key: getattr(self, c.key) for c in self.__table__.columns}
        row["job"] = row.pop("job_id")
        return row

    def __repr__(self) -> str:
        return f"TrialRow(job_id={self.job_id!r}, stage={self.stage!r}, trial_id={self.trial_id!r})"
