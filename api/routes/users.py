"""/v1/users/{name}/quota: a user's quotas; admins set them, a user reads their own."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from api.admission import user_quota
from api.auth import QUOTA_FIELDS, InvalidUserName, UserNotFound, set_quota
from api.bodies import read_body
from api.deps import CurrentUser, ServicesDep, SessionDep
from api.jobstore import echoed
from api.models import User
from api.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1/users", tags=["users"])


class QuotaOut(BaseModel):
    user: str
    running_jobs: int = Field(description="Jobs that run at once; more wait queued.")
    gpus: float | None = Field(description="GPUs the user's running jobs hold at once; null: no limit.")
    gpu_hours: float | None = Field(description="GPU-hours per 30 days; null: no limit.")
    own: dict[str, float | int | None] = Field(description=(
        "What an admin set for this user (null: the service's default applies)."))


class QuotaIn(BaseModel):
    """Each key given sets the user's own quota (null: back to the service's default); keys left out stay."""

    model_config = {"extra": "forbid", "strict": True}  # strict: true is no 1, "5" no 5 (as a grid's keys)

    max_running_jobs: int | None = Field(None, ge=1, le=10_000)
    max_gpus: float | None = Field(None, gt=0, le=100_000)
    max_gpu_hours: float | None = Field(None, ge=0, le=1e9)


_QUOTA_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/QuotaIn"}}}}}


def _user(session, viewer: User, name: str) -> User:
    if not viewer.is_admin and viewer.name != name:
        raise Problem(403, f"only an admin may see or set another user's quota ({echoed(name)})")
    found = session.scalars(select(User).where(User.name == name)).one_or_none()
    if found is None:
        raise Problem(404, f"no user {echoed(name)}")
    return found


def _out(user: User, services) -> QuotaOut:
    quota = user_quota(user, services.settings)
    return QuotaOut(user=user.name, running_jobs=quota.running_jobs, gpus=quota.gpus, gpu_hours=quota.gpu_hours,
                    own={f: getattr(user, f) for f in QUOTA_FIELDS})


@router.get("/{name}/quota", response_model=QuotaOut, responses={403: {"description": "Another user's, not admin"}})
def get_quota(name: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> QuotaOut:
    """The quotas that hold the user's jobs: an admin's setting for the user, else the service's."""
    return _out(_user(session, user, name), services)


@router.put("/{name}/quota", response_model=QuotaOut, openapi_extra=_QUOTA_BODY,
            responses={403: {"description": "Not an admin"}})
async def put_quota(name: str, request: Request, user: CurrentUser, services: ServicesDep,
                    session: SessionDep) -> QuotaOut:
    """Set a user's own quotas (admins only); the queue applies them from its next round. The body is
    read after the caller is known to be an admin, so that nobody else learns what it should hold."""
    if not user.is_admin:
        raise Problem(403, "only an admin may set quotas")
    try:
        body = QuotaIn.model_validate_json(await read_body(request, services.settings.max_upload_bytes))
    except ValidationError as exc:
        errors = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "line": None}
                  for e in exc.errors()]
        raise Problem(422, "the quota does not validate: " + "; ".join(f"{e['path'] or 'body'}: {e['message']}"
                                                                       for e in errors), errors=errors) from None
    return await run_in_threadpool(_set, session, user, name, body, services)


def _set(session, user: User, name: str, body: QuotaIn, services) -> QuotaOut:
    target = _user(session, user, name)
    try:
        updated = set_quota(session, target.name, body.model_dump(exclude_unset=True))
    except (UserNotFound, InvalidUserName) as exc:
        raise Problem(404, str(exc)) from None
    return _out(updated, services)
