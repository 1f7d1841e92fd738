"""/v1/jobs/{id}/logs: a job's driver log, read from its Ray job through the Ray Jobs API.

The service keeps no logs of its own: Ray keeps each Ray job's driver output, and this route
passes it on, whole (``follow=false``) or as it grows until the job ends (``follow=true``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from api.deps import CurrentViewer, Services, ServicesDep, Viewer
from api.jobstore import get_job
from api.problems import Problem
from api.runner import RayJobNotFound, RayJobs, RayUnavailable

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["jobs"])

TEXT = "text/plain; charset=utf-8"


def _submission(services: Services, job_id: str, viewer: Viewer) -> str:
    """The Ray submission id of the job's latest driver; 404 when the viewer may not see the job or
    it has not been handed to Ray yet."""
    with services.sessions() as session:
        job = get_job(session, job_id, viewer=viewer)
        if job.ray_job_id is None:
            raise Problem(404, f"job {job.id} is {job.status} and has no Ray job yet, so no driver log: its log "
                          "starts when the queue hands it to Ray (`adf-service status` says why it waits)")
        return job.ray_job_id


def _ask_ray(ray: RayJobs, submission_id: str, follow: bool) -> str | None:
    """The whole log now, or (``follow``) None once Ray has answered that it has the job; as problems else."""
    try:
        if follow:
            ray.state(submission_id)  # the job exists, and the client that tail() uses is made
            return None
        return ray.logs(submission_id)
    except RayJobNotFound:
        raise Problem(404, f"Ray has no job {submission_id} any more (a restarted or replaced cluster forgets "
                      "its jobs, and their logs with them)") from None
    except RayUnavailable as exc:
        raise Problem(503, f"the Ray cluster does not answer, so the log cannot be read now: {exc}") from None


async def _follow(ray: RayJobs, submission_id: str) -> AsyncIterator[str]:
    try:
        async for chunk in ray.tail(submission_id):
            yield chunk
    except RayUnavailable as exc:  # the answer has begun (200): the reader learns it in the text
        yield f"\n[adf-service: {exc}]\n"


@router.get("/logs", response_class=PlainTextResponse, responses={
    200: {"content": {"text/plain": {}}, "description": "The driver's log (with follow: streamed until the job ends)"},
    404: {"description": "No such job (or not yours), or it has no Ray job yet (queued)"},
    503: {"description": "The Ray cluster does not answer"}})
async def logs(job_id: str, viewer: CurrentViewer, services: ServicesDep, follow: bool = False) -> Response:
    """The job's driver log (its latest Ray job's stdout and stderr): what it holds now, or with
    ``follow=true`` all of it and then each new chunk as the driver writes it, until the job ends."""
    submission = await to_thread.run_sync(_submission, services, job_id, viewer, limiter=services.store_limiter)
    text = await to_thread.run_sync(_ask_ray, services.ray, submission, follow)
    if text is not None:
        return PlainTextResponse(text, media_type=TEXT)
    # No proxy between here and the reader should hold the chunks back (nginx buffers by default).
    return StreamingResponse(_follow(services.ray, submission), media_type=TEXT,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
