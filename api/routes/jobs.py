"""/v1/jobs: submit a grid, list jobs, a job's status, cancel, resume."""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import CurrentUser, Services, ServicesDep, SessionDep
from api.jobstore import count_running, echoed, find_by_key, get_job, hash_request, list_jobs
from api.problems import Problem
from api.schemas import JobOut, JobPage
from api.service import (
    DatasetRefused,
    accept_grid,
    cancel_job,
    place_transfer,
    reconcile,
    resume_job,
    server_spec,
)
from api.settings import Settings
from api.status import JobStatus
from trials.expand import ray_trial_counts
from trials.spec import GridSpec, GridSpecError, parse_grid, parse_grid_json

__all__ = ["grid_schemas", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_YAML = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_GRID_BODY = {
    "requestBody": {
        "required": True,
        "description": "A grid: grid.yaml as YAML, or the same document as a JSON object (docs/grid.md).",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/GridSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def grid_schemas() -> dict[str, dict]:
    """GridSpec and the models it uses, as OpenAPI components (the request body is read by hand)."""
    schema = GridSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "GridSpec": schema}


def _checked_grid(body: bytes, media: str, settings: Settings) -> tuple[GridSpec, str]:
    """The grid as this service runs it (:func:`server_spec`) and the hash of the grid as sent.

    Blocking (YAML, the store's manifest): runs in a worker thread, never on the event loop.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8 text") from None
    try:
        if media == "application/json":
            spec = parse_grid_json(text, source="request body")
        elif media in _YAML:
            spec = parse_grid(text, source="request body")
        else:
            raise Problem(415, f"content type {echoed(media) if media else 'none'}: send application/json "
                          "or application/yaml")
    except GridSpecError as exc:
        errors = [{"path": p.path, "message": p.message, "line": p.line} for p in exc.problems]
        more = {"more_errors": exc.more} if exc.more else {}
        if exc.unreadable:  # no document at all (syntax, a key given twice ...), not an invalid grid
            kind = "JSON" if media == "application/json" else "YAML"
            raise Problem(400, f"malformed {kind}: {exc}", errors=errors, **more) from None
        detail = "the grid does not validate: " + "; ".join(f"{e['path'] or 'grid'}: {e['message']}" for e in errors)
        if exc.more:
            detail += f"; … and {exc.more:,} more problem{'s' * (exc.more != 1)}"
        raise Problem(422, detail, errors=errors, **more) from None
    size = sum(ray_trial_counts(spec).values())  # closed form: nothing is expanded yet
    if size > settings.max_grid_trials:
        raise Problem(422, f"the grid makes {size:,} trials, more than this service's limit of "
                      f"{settings.max_grid_trials:,}", errors=[{"path": "", "message": "too many trials", "line": None}])
    try:
        placed = server_spec(spec, settings)
    except DatasetRefused as exc:
        raise Problem(422, str(exc), errors=[{"path": exc.path, "message": exc.message, "line": None}]) from None
    return placed, hash_request(spec.model_dump(mode="json"))


async def _read_grid(request: Request, services: Services) -> tuple[GridSpec, str]:
    settings = services.settings
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body has {int(declared):,} bytes, more than the limit of {limit:,}")
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, f"the body has {len(body):,} bytes, more than the limit of {limit:,}")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Off the event loop (so /healthz and every other request go on), in threads of their own
    # (so slow bodies cannot take the store's), within a time budget: a body that is still being
    # read after parse_seconds is refused and its thread left to finish on its own.
    try:
        with anyio.fail_after(settings.parse_seconds):
            return await anyio.to_thread.run_sync(
                _checked_grid, body, media, settings, abandon_on_cancel=True, limiter=services.parse_limiter)
    except TimeoutError:
        raise Problem(422, f"the grid took longer than {settings.parse_seconds:g} s to read and check; "
                      "send a smaller one", errors=[{"path": "", "message": "too slow to read", "line": None}]) from None


@router.post("", status_code=202, response_model=JobOut, openapi_extra=_GRID_BODY,
             responses={413: {"description": "Body over the size limit"}, 422: {"description": "Invalid grid"}})
async def submit_job(
    request: Request, response: Response, user: CurrentUser, services: ServicesDep, session: SessionDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Submit a grid; its Ray job starts at once. ``Idempotency-Key`` makes a retry safe."""
    settings = services.settings
    spec, request_hash = await _read_grid(request, services)
    try:
        spec = await run_in_threadpool(place_transfer, session, user, spec)
    except DatasetRefused as exc:
        raise Problem(422, str(exc), errors=[{"path": exc.path, "message": exc.message, "line": None}]) from None
    # The store and the Ray Jobs API block: off the event loop, or every other request waits (and
    # a pool connection awaited here, held by requests parked on the loop, is never freed).
    # A retried submission that already made its job is a replay, never refused by the cap.
    replay = idempotency_key is not None and await run_in_threadpool(
        find_by_key, session, user, idempotency_key)
    if not replay and await run_in_threadpool(count_running, session, user) >= settings.max_running_jobs_per_user:
        raise Problem(429, f"user {user.name!r} has {settings.max_running_jobs_per_user} queued or running "
                      "jobs, the most allowed: wait for one to end or cancel one")
    job, created = await run_in_threadpool(
        accept_grid, session, services.ray, settings, owner=user, spec=spec,
        request_hash=request_hash, idempotency_key=idempotency_key,
    )
    base = (settings.public_url or "").rstrip("/")
    response.headers["Location"] = f"{base}/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.of(job, services.dashboard_url)


@router.get("", response_model=JobPage)
def jobs(
    user: CurrentUser, services: ServicesDep, session: SessionDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> JobPage:
    """Your jobs (an admin's: everyone's), newest first."""
    page, total = list_jobs(session, viewer=user, status=status, limit=limit, offset=offset)
    return JobPage(items=[JobOut.of(j, services.dashboard_url) for j in page], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, responses={404: {"description": "No such job (or not yours)"}})
def job(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> JobOut:
    """A job's status, progress per stage, timestamps, Ray job id and dashboard link."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user))
    return JobOut.of(found, services.dashboard_url)


@router.post("/{job_id}/cancel", response_model=JobOut, responses={409: {"description": "The job has ended"}})
def cancel(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> JobOut:
    """Stop a queued or running job: its Ray job and its trials."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user))
    return JobOut.of(cancel_job(session, services.ray, found), services.dashboard_url)


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut,
             responses={409: {"description": "The job is not failed or cancelled"}})
def resume(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> JobOut:
    """Continue a failed or cancelled job from its checkpoints, in a new Ray job."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user))
    return JobOut.of(resume_job(session, services.ray, found), services.dashboard_url)
