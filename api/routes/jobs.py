"""/v1/jobs: submit a grid, list jobs, a job's status, cancel, resume, rerun its failed trials, extend it."""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.admission import schedule, user_quota
from api.bodies import read_body
from api.cluster import alive_totals
from api.deps import CurrentUser, Services, ServicesDep, SessionDep
from api.jobstore import count_running, echoed, find_by_key, get_job, hash_request, list_jobs
from api.problems import Problem
from api.queue import NeverFits, never_fits
from api.schemas import JobOut, JobPage
from api.service import (
    DatasetRefused,
    NothingToDo,
    accept_grid,
    cancel_job,
    extend_job,
    place_reuse,
    place_transfer,
    place_warm_start,
    reconcile,
    rerun_job,
    resume_job,
    server_spec,
)
from api.settings import Settings
from api.status import JobStatus
from trials.checks import key_line, launch_problems
from trials.expand import ray_trial_counts
from trials.spec import GridSpec, GridSpecError, parse_grid_json, parse_grid_with_lines

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
    """The grid as this service runs it (:func:`server_spec`) and the hash of the grid as sent, once the
    checks before launch (trials.checks: its store, BOHB's budgets, a trial against the cluster's nodes)
    find nothing that keeps it from running; each problem a 422 ``errors`` entry with its grid.yaml line.

    Blocking (YAML, the store's manifest, the Ray dashboard): runs in a worker thread, never on the loop.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8 text") from None
    lines: dict = {}  # a JSON body has none
    try:
        if media == "application/json":
            spec = parse_grid_json(text, source="request body")
        elif media in _YAML:
            spec, lines = parse_grid_with_lines(text, source="request body")
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
        error = {"path": exc.path, "message": exc.message, "line": key_line(lines, exc.path)}
        raise Problem(422, str(exc), errors=[error]) from None
    # The nodes' totals (kept a few seconds); None when the dashboard does not answer: no fit is checked
    problems = launch_problems(placed, lines=lines, nodes=alive_totals(settings.ray_address))
    if problems:
        errors = [{"path": p.path, "message": p.message, "line": p.line} for p in problems]
        detail = "the grid cannot run: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        raise Problem(422, detail, errors=errors)
    return placed, hash_request(spec.model_dump(mode="json"))


async def _read_grid(request: Request, services: Services) -> tuple[GridSpec, str]:
    settings = services.settings
    body = await read_body(request, settings.max_upload_bytes)
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
    priority: Annotated[int | None, Query(ge=-100, le=100, description=(
        "The job's place in the queue, higher first (default: the grid's `priority`, else 0); above 0 "
        "for admins only."))] = None,
) -> JobOut:
    """Submit a grid: it waits ``queued`` until the queue admits it (priority, then submission order;
    the user's quotas; room on the cluster). ``Idempotency-Key`` makes a retry safe."""
    settings = services.settings
    spec, request_hash = await _read_grid(request, services)
    if priority is not None:
        spec = spec.model_copy(update={"priority": priority})
    if spec.priority > 0 and not user.is_admin:
        where = "the priority query parameter" if priority is not None else "priority"
        raise Problem(422, f"{where}: {spec.priority} is above the default 0, which only an admin may set",
                      errors=[{"path": "priority", "message": "above 0 for admins only", "line": None}])
    try:
        never_fits(spec.resources.gpus_per_trial, user_quota(user, settings), user.name)
        spec = await run_in_threadpool(place_transfer, session, user, spec)
        spec = await run_in_threadpool(place_warm_start, session, user, spec)
        spec = await run_in_threadpool(place_reuse, session, user, spec)
    except (DatasetRefused, NeverFits) as exc:
        raise Problem(422, str(exc), errors=[{"path": exc.path, "message": exc.message, "line": None}]) from None
    # The store and the Ray Jobs API block: off the event loop, or every other request waits (and
    # a pool connection awaited here, held by requests parked on the loop, is never freed).
    # A retried submission that already made its job is a replay, never refused by the cap.
    replay = idempotency_key is not None and await run_in_threadpool(
        find_by_key, session, user, idempotency_key)
    if not replay and await run_in_threadpool(count_running, session, user) >= settings.max_queued_jobs_per_user:
        raise Problem(429, f"user {user.name!r} has {settings.max_queued_jobs_per_user} queued or running "
                      "jobs, the most allowed: wait for one to end or cancel one")
    job, created = await run_in_threadpool(
        accept_grid, session, services.ray, settings, owner=user, spec=spec,
        request_hash=request_hash, idempotency_key=idempotency_key,
    )
    if created:  # its turn may be now: the queue runs at once rather than at its next round
        await run_in_threadpool(_queue_round, session, services)
    base = (settings.public_url or "").rstrip("/")
    response.headers["Location"] = f"{base}/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.of(job, services.dashboard_url)


def _queue_round(session: Session, services: Services) -> None:
    schedule(session, services.ray, services.settings, services.nodes())


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
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user), services.settings)
    return JobOut.of(found, services.dashboard_url)


@router.post("/{job_id}/cancel", response_model=JobOut, responses={409: {"description": "The job has ended"}})
def cancel(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> JobOut:
    """Stop a queued or running job: its Ray job and its trials."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user), services.settings)
    return JobOut.of(cancel_job(session, services.ray, found), services.dashboard_url)


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut,
             responses={409: {"description": "The job is not failed or cancelled"}})
def resume(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep) -> JobOut:
    """Continue a failed or cancelled job from its checkpoints: back to the queue, then a new Ray job."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user), services.settings)
    resume_job(session, services.ray, found, by=user.name)
    _queue_round(session, services)
    return JobOut.of(found, services.dashboard_url)


@router.post("/{job_id}/rerun", status_code=202, response_model=JobOut,
             responses={409: {"description": "The job runs, or it succeeded without a failed trial"}})
def rerun(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep,
          failed: Annotated[bool, Query(description="Rerun the failed and unfinished trials (the only kind now)."
                                        )] = True) -> JobOut:
    """Run an ended job's failed and unfinished trials again, from scratch, keeping every finished one:
    back to the queue, then a new Ray job."""
    if not failed:
        raise Problem(422, "failed=false: a rerun reruns the failed and unfinished trials; there is no other kind",
                      errors=[{"path": "query.failed", "message": "must be true", "line": None}])
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user), services.settings)
    try:
        rerun_job(session, found, by=user.name)
    except NothingToDo as exc:
        raise Problem(409, str(exc)) from None
    _queue_round(session, services)
    return JobOut.of(found, services.dashboard_url)


@router.post("/{job_id}/extend", status_code=202, response_model=JobOut,
             responses={409: {"description": "The job has not succeeded"}})
def extend(job_id: str, user: CurrentUser, services: ServicesDep, session: SessionDep,
           repeats: Annotated[int, Query(ge=1, le=100, description="Repeats (new seeds) to add to each searched "
                                         "setting.")]) -> JobOut:
    """Add repeats to a succeeded job's searched settings without rerunning what exists: back to the queue,
    then a new Ray job that runs only the new trials."""
    found = reconcile(session, services.ray, get_job(session, job_id, viewer=user), services.settings)
    try:
        extend_job(session, found, repeats=repeats, by=user.name, max_trials=services.settings.max_grid_trials)
    except NothingToDo as exc:
        raise Problem(409, str(exc)) from None
    except ValueError as exc:
        raise Problem(422, str(exc), errors=[{"path": "query.repeats", "message": str(exc), "line": None}]) from None
    _queue_round(session, services)
    return JobOut.of(found, services.dashboard_url)
