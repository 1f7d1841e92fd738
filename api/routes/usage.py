"""/v1/usage: GPU- and CPU-hours per user and job since a date (api/usage.py; docs/rest.md, "Usage")."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import UserNotFound
from api.deps import CurrentUser, SessionDep
from api.jobstore import echoed
from api.models import utcnow
from api.problems import Problem
from api.status import JobStatus
from api.usage import USAGE_WINDOW, usage_by_user

__all__ = ["JobUsageRowOut", "UsageOut", "UserUsageOut", "router"]

router = APIRouter(prefix="/v1", tags=["usage"])


class JobUsageRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: str
    name: str
    status: JobStatus
    created_at: datetime
    ended_at: datetime | None
    gpu_hours: float = Field(description="GPU-seconds of every attempt of its trials / 3600.")
    cpu_hours: float
    lost_gpu_hours: float = Field(description="Of gpu_hours, those of work redone after a failure.")
    lost_cpu_hours: float


class UserUsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user: str
    gpu_hours: float = Field(description="The sum over `jobs`.")
    cpu_hours: float
    lost_gpu_hours: float
    lost_cpu_hours: float
    jobs: list[JobUsageRowOut] = Field(description="The user's jobs in the window, oldest first.")


class UsageOut(BaseModel):
    since: datetime = Field(description=(
        "The window's start: a job counts, whole, when it was created or ended since then, or is still "
        "queued or running."))
    users: list[UserUsageOut]


@router.get("/usage", response_model=UsageOut, responses={403: {"description": "Another user's, not admin"},
                                                          404: {"description": "No such user"}})
def usage(
    viewer: CurrentUser,
    session: SessionDep,
    user: Annotated[str | None, Query(max_length=64, description=(
        "Whose: yours by default; another user's needs an admin (whose default is everyone's)."))] = None,
    since: Annotated[datetime | None, Query(description=(
        "ISO date or date-time (UTC when it names no zone); default: 30 days ago."))] = None,
) -> UsageOut:
    """GPU- and CPU-hours (and those lost to restarts) per user, with each job's, since a date."""
    if user is not None and user != viewer.name and not viewer.is_admin:
        raise Problem(403, f"only an admin may see another user's usage ({echoed(user)})", title="Forbidden")
    if user is None and not viewer.is_admin:
        user = viewer.name  # a user's own; an admin's default is everyone's
    if since is None:
        since = utcnow() - USAGE_WINDOW
    elif since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    try:
        found = usage_by_user(session, user=user, since=since)
    except UserNotFound:
        raise Problem(404, f"no user {echoed(user)}") from None
    return UsageOut(since=since, users=[UserUsageOut.model_validate(u) for u in found])
