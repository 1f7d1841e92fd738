"""A job's statuses: the one spelling the store, the REST schemas, the routes and the client share.

No SQLAlchemy or FastAPI here, so that the client commands can import it cheaply.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ACTIVE_STATUSES", "ENDED_STATUSES", "JOB_STATUSES", "JobStatus"]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")  # count against max_running_jobs_per_user
ENDED_STATUSES: tuple[str, ...] = tuple(s for s in JOB_STATUSES if s not in ACTIVE_STATUSES)
