"""/v1/compare?jobs=…: jobs side by side, per setting and group of genotypes (trials/compare.py)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, Query, Response

from api.deps import CurrentViewer, ServicesDep
from api.jobstore import get_job, list_trials
from api.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["results"])


@router.get("/compare", responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/html": {}}}})
async def compare(
    viewer: CurrentViewer, services: ServicesDep,
    jobs: Annotated[list[str], Query(description="Job ids, repeated (jobs=a&jobs=b) or comma-separated.")],
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    """Each job's test top-1 per setting and group (n, mean ± std, best), side by side; ``html``: one
    self-contained page with the table and every run of every job overlaid in one figure."""
    ids = list(dict.fromkeys(j.strip() for value in jobs for j in value.split(",") if j.strip()))

    def load() -> Response:
        # matplotlib and the statistics load on the first comparison asked for, not when the server starts,
        # and in this thread: on the event loop, their second of importing held up every other request
        from trials.compare import MAX_JOBS, compare_html, compare_rows, compare_section
        from trials.report import render_csv

        if not 1 <= len(ids) <= MAX_JOBS:
            raise Problem(422, f"jobs: name 1 to {MAX_JOBS} jobs to compare, got {len(ids)}")
        rows = {}
        with services.sessions() as session:
            for job_id in ids:  # another user's job is a 404, as everywhere
                job = get_job(session, job_id, viewer=viewer)
                rows[job.id] = [r.to_dict() for r in list_trials(session, job, limit=None)[0]]
        if format == "html":
            return Response(compare_html(rows), media_type="text/html")
        if format == "csv":
            return Response(render_csv(compare_section(rows)), media_type="text/csv")
        body = json.dumps({"jobs": list(rows), "rows": compare_rows(rows)})
        return Response(body, media_type="application/json")

    return await to_thread.run_sync(load, limiter=services.store_limiter)

