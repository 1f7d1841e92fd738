"""GPU-hours on the service's side (issue 15, items 2 and 5): a job's usage from its driver into the store,
per user and job, and the notice of running trials that stopped making progress.

A job's driver counts every trial attempt (:class:`trials.usage.UsageLedger`) and writes its totals
(``usage``) and its running trials with their last progress (``running``) into progress.json; each
round of the service copies them here (:func:`apply_usage`, :func:`stale_notice`, called by
:func:`api.jobstore.set_progress`). Hours are these seconds / 3600, as the driver measured them.

The window of ``since`` (quotas' "GPU-hours per 30 days" and ``GET /v1/usage``): a job counts, whole,
when it was created or ended at ``since`` or later, or is still queued or running; a job that began
before ``since`` and ended after it counts all its hours (a job's seconds carry no dates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from api.models import Job, User, utcnow
from api.status import ACTIVE_STATUSES

__all__ = [
    "SECONDS", "USAGE_WINDOW", "JobUsage", "UserUsage", "apply_usage", "running_trials",
    "stale_notice", "usage_by_user", "usage_hours", "user_gpu_hours",
]

# The job's columns the driver's totals go to, as progress.json's "usage" names them
SECONDS = ("gpu_seconds", "cpu_seconds", "lost_gpu_seconds", "lost_cpu_seconds")
USAGE_WINDOW = timedelta(days=30)  # GET /v1/usage's default, and the GPU-hour quota's window
NOTICE_TRIALS = 5  # stale trials a notice names; the rest are counted


def apply_usage(job: Job, progress: Mapping[str, Any]) -> None:
    """Copy the driver's totals from a progress snapshot into the job's columns; a snapshot without
    them (a driver from before usage was recorded) leaves the columns as they are."""
    usage = progress.get("usage")
    if not isinstance(usage, Mapping):
        return
    for column in SECONDS:
        if isinstance(usage.get(column), (int, float)):
            setattr(job, column, float(usage[column]))


def usage_hours(job: Job) -> dict[str, float]:
    """``{gpu_hours, cpu_hours, lost_gpu_hours, lost_cpu_hours}`` of a job (its driver's last count)."""
    return {column.replace("seconds", "hours"): (getattr(job, column) or 0.0) / 3600 for column in SECONDS}


def running_trials(progress: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A snapshot's running trials, the one without progress for longest first:
    ``[{trial_key, last_progress_at (Unix seconds), node_id}]``."""
    running = progress.get("running")
    if not isinstance(running, Mapping):
        return []
    found = [{"trial_key": key, "last_progress_at": float(r["last_progress_at"]), "node_id": r.get("node_id")}
             for key, r in running.items()]
    return sorted(found, key=lambda t: (t["last_progress_at"], t["trial_key"]))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stale_notice(progress: Mapping[str, Any], now: float, stale_after_s: float) -> str | None:
    """What a job's notice says of its running trials without a result for over ``stale_after_s``
    seconds at ``now`` (Unix seconds; the driver's clock and the service's are taken to agree), e.g.
    ``"2 trials without progress for over 30 min: search-S1-all-I1-C1-r0 (node ab12cd34…, last 41 min
    ago), …"``; None when there is none."""
    stale = [t for t in running_trials(progress) if now - t["last_progress_at"] > stale_after_s]
    if not stale:
        return None
    named = [f"{t['trial_key']} (node {t['node_id'][:8] + '…' if t['node_id'] else 'not known yet'}, "
             f"last {_duration(now - t['last_progress_at'])} ago)" for t in stale[:NOTICE_TRIALS]]
    if len(stale) > NOTICE_TRIALS:
        named.append(f"and {len(stale) - NOTICE_TRIALS} more")
    trials = "1 trial" if len(stale) == 1 else f"{len(stale)} trials"
    return f"{trials} without progress for over {_duration(stale_after_s)}: {', '.join(named)}"


@dataclass(frozen=True)
class JobUsage:
    """One job's hours, as ``GET /v1/usage`` lists them."""

    job_id: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    gpu_hours: float
    cpu_hours: float
    lost_gpu_hours: float
    lost_cpu_hours: float

    @classmethod
    def of(cls, job: Job) -> JobUsage:
        return cls(job.id, job.name, job.status, job.created_at, job.ended_at, **usage_hours(job))


@dataclass(frozen=True)
class UserUsage:
    """A user's hours in a window: the sums over ``jobs``."""

    user: str
    gpu_hours: float
    cpu_hours: float
    lost_gpu_hours: float
    lost_cpu_hours: float
    jobs: tuple[JobUsage, ...]

    @classmethod
    def of(cls, user: str, jobs: list[JobUsage]) -> UserUsage:
        sums = {k: sum(getattr(j, k) for j in jobs) for k in ("gpu_hours", "cpu_hours", "lost_gpu_hours",
                                                               "lost_cpu_hours")}
        return cls(user, **sums, jobs=tuple(jobs))


def _in_window(since: datetime) -> ColumnElement[bool]:
    """The window's rule (module docstring): created or ended since ``since``, or still queued or running."""
    return or_(Job.created_at >= since, Job.ended_at >= since, Job.status.in_(ACTIVE_STATUSES))


def usage_by_user(s: Session, *, user: str | None = None, since: datetime | None = None) -> list[UserUsage]:
    """Per user (by name), their jobs' hours in the window from ``since`` (default: :data:`USAGE_WINDOW`
    ago): every user with a job there, or only ``user``, with zeros when they have none
    (:class:`api.auth.UserNotFound` when there is no such user)."""
    since = since if since is not None else utcnow() - USAGE_WINDOW
    query = select(Job).join(Job.owner).where(_in_window(since))
    if user is not None:
        if s.scalar(select(User.id).where(User.name == user)) is None:
            from api.auth import UserNotFound  # api.auth imports the job store, which imports this module

            raise UserNotFound(f"no user {user!r}")
        query = query.where(User.name == user)
    by_user: dict[str, list[JobUsage]] = {user: []} if user is not None else {}
    for job in s.scalars(query.order_by(User.name, Job.created_at, Job.id)):
        by_user.setdefault(job.owner.name, []).append(JobUsage.of(job))
    return [UserUsage.of(name, jobs) for name, jobs in by_user.items()]


def user_gpu_hours(s: Session, user: User, since: datetime) -> float:
    """The GPU-hours of ``user``'s jobs in the window from ``since`` (what the GPU-hour quota holds to)."""
    seconds = s.scalar(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0))
                       .where(Job.owner_id == user.id, _in_window(since)))
    return float(seconds or 0.0) / 3600
