"""/v1/jobs/{id}/trials, /results, /epochs, /report, /best, /trials/{trial}/genotype: a job's results.

Result rows come from the store, where they are imported from the job's Parquet tables
when its Ray job succeeds; pages and filters are SQL queries on indexed columns.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from anyio import to_thread
from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from adf_service.space import CELLS_RANGE, DISCRETIZATIONS, INPUTS_RANGE, OPERATOR_SETS
from api.deps import CurrentUser, CurrentViewer, ServicesDep, SessionDep
from api.jobstore import get_job, get_trial, list_trials
from api.problems import Problem
from api.schemas import BestOut, TrialOut, TrialPage
from trials.epochs import EPOCH_SCHEMA, read_epochs
from trials.results import RESULT_SCHEMA, STAGES, TRIAL_STATUSES, best_of_job
from trials.storage import JobStorage

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["results"])

# The query enums and bounds, from the one place each is defined (a new operator set or
# stage shows in the API, its OpenAPI schema and the 422 messages by itself).
Stage = Literal[STAGES]  # type: ignore[valid-type]
OperatorSet = Literal[tuple(OPERATOR_SETS)]  # type: ignore[valid-type]
Discretization = Literal[DISCRETIZATIONS]  # type: ignore[valid-type]
TrialStatus = Literal[TRIAL_STATUSES]  # type: ignore[valid-type]


@router.get("/trials", response_model=TrialPage)
async def trials(
    job_id: str, viewer: CurrentViewer, services: ServicesDep,
    stage: Stage | None = None,
    operators: OperatorSet | None = None,
    discretization: Discretization | None = None,
    n_inputs: Annotated[int | None, Query(ge=min(INPUTS_RANGE), le=max(INPUTS_RANGE))] = None,
    n_cells: Annotated[int | None, Query(ge=min(CELLS_RANGE), le=max(CELLS_RANGE))] = None,
    status: TrialStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Response:
    """A page of the job's trial rows, filtered by stage and setting, ordered by (stage, trial id)."""
    filters = dict(stage=stage, operators=operators, discretization=discretization, n_inputs=n_inputs,
                   n_cells=n_cells, status=status)
    body = services.pages.cached(job_id, viewer, filters, limit, offset)
    if body is None:
        def load() -> bytes:
            with services.sessions() as session:
                return services.pages.load(session, job_id, viewer, filters, limit, offset)

        body = await to_thread.run_sync(load, limiter=services.store_limiter)
    return Response(body, media_type="application/json")


@router.get("/trials/{trial_id}/genotype", responses={404: {"description": "No such trial, or no genotype"}})
def genotype(job_id: str, trial_id: str, user: CurrentUser, session: SessionDep,
             stage: Stage | None = None) -> dict[str, Any]:
    """The trial's genotype as JSON (a search trial's is the one its evaluation trained)."""
    job = get_job(session, job_id, viewer=user)
    row = get_trial(session, job, trial_id, stage=stage)
    if not row.genotype:
        raise Problem(404, f"job {job.id} trial {trial_id!r} ({row.stage}) has no genotype "
                      f"({'a baseline has none' if row.stage == 'baselines' else row.status})")
    return json.loads(row.genotype)


def _all_rows(session, job, stage: str | None) -> list[dict[str, Any]]:
    rows, _ = list_trials(session, job, stage=stage, limit=None)
    return [r.to_dict() for r in rows]


def _table_response(rows: list[dict[str, Any]], schema: pa.Schema, format: str, name: str) -> Response:
    """Rows as JSON, CSV or Parquet (with ``schema``'s columns), the latter two as attachments."""
    if format == "json":
        return Response(json.dumps(rows), media_type="application/json")
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=schema.names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return Response(sink.getvalue(), media_type="application/vnd.apache.parquet",
                    headers={"Content-Disposition": f'attachment; filename="{name}.parquet"'})


@router.get("/results", responses={200: {"content": {
    "application/json": {}, "text/csv": {}, "application/vnd.apache.parquet": {}}}})
def results(
    job_id: str, user: CurrentUser, session: SessionDep,
    format: Literal["json", "csv", "parquet"] = "json",
    stage: Stage | None = None,
) -> Response:
    """Every result row of the job (or of one stage), as JSON, CSV or Parquet (docs/results.md)."""
    job = get_job(session, job_id, viewer=user)
    rows = _all_rows(session, job, stage)
    rows.sort(key=lambda r: (STAGES.index(r["stage"]), r["trial_key"] or ""))
    return _table_response(rows, RESULT_SCHEMA, format, f"{job.id}-{stage or 'all'}")


@router.get("/epochs", responses={200: {"content": {
    "application/json": {}, "text/csv": {}, "application/vnd.apache.parquet": {}}}})
async def epochs(
    job_id: str, viewer: CurrentViewer, services: ServicesDep,
    format: Literal["json", "csv", "parquet"] = "json",
    stage: Stage | None = None,
) -> Response:
    """Every trial-epoch of the job (train/val loss, val/test top-1, α/β entropy, lr, seconds), one row
    each: ``results/epochs.parquet`` once the job has ended, its trial directories while it runs."""
    def load() -> list[dict[str, Any]]:
        with services.sessions() as session:
            job = get_job(session, job_id, viewer=viewer)
            storage = job.storage_dir
        try:
            rows = read_epochs(JobStorage.at(storage))
        except (OSError, pa.ArrowException) as exc:
            raise Problem(503, f"job {job_id}: its storage cannot be read now ({exc})") from None
        return [r for r in rows if stage is None or r["stage"] == stage]

    rows = await to_thread.run_sync(load, limiter=services.store_limiter)
    return _table_response(rows, EPOCH_SCHEMA, format, f"{job_id}-epochs-{stage or 'all'}")


@router.get("/report", response_class=HTMLResponse, responses={
    200: {"content": {"text/html": {}}, "description": "The job's report: one self-contained HTML page"},
    409: {"description": "The job has no result tables yet"}})
async def report(job_id: str, viewer: CurrentViewer, services: ServicesDep) -> HTMLResponse:
    """The job's report (tables 3-5, searched vs random with statistics, figures, genotype diagrams) as one
    HTML page with nothing external: the one the job wrote at its end, else made now from its tables."""
    def load() -> bytes:
        # torch, scipy and matplotlib load on the first report asked for, not when the server starts
        from trials.job_report import REPORT_DIR, REPORT_HTML, ReportError, build_report, read_job

        with services.sessions() as session:
            job = get_job(session, job_id, viewer=viewer)
            status, storage_dir = job.status, job.storage_dir
        storage = JobStorage.at(storage_dir)
        written = posixpath.join(REPORT_DIR, REPORT_HTML)
        try:
            if storage.exists(written):
                return storage.read_bytes(written)
            return build_report(read_job(storage))[REPORT_HTML]
        except ReportError:
            raise Problem(409, f"job {job_id} ({status}) has no result tables yet: its report comes "
                               "when its stages have ended") from None
        except (OSError, pa.ArrowException) as exc:
            raise Problem(503, f"job {job_id}: its storage cannot be read now ({exc})") from None

    return HTMLResponse(await to_thread.run_sync(load, limiter=services.store_limiter))


@router.get("/best/export", responses={
    200: {"content": {"application/zip": {}},
          "description": "genotype.json, model.pt (trained weights), metrics.json, zipped"},
    409: {"description": "No succeeded evaluation of a learned search, or its weights are not kept"}})
async def best_export(job_id: str, viewer: CurrentViewer, services: ServicesDep) -> Response:
    """The best genotype (the one ``/best`` names) as files: its genotype with provenance, its trained
    weights at the best-validation epoch (adf_service.fusion.load_fusion reads them) and its metrics."""
    def load() -> bytes:
        import zipfile

        # torch loads on the first export asked for, not when the server starts
        from trials.export import ExportError, best_export
        from trials.job_report import ReportError, read_job

        with services.sessions() as session:
            job = get_job(session, job_id, viewer=viewer)
            storage_dir = job.storage_dir
        try:
            files = best_export(read_job(JobStorage.at(storage_dir)))
        except (ReportError, ExportError) as exc:
            raise Problem(409, f"job {job_id}: {exc}") from None
        except (OSError, pa.ArrowException) as exc:
            raise Problem(503, f"job {job_id}: its storage cannot be read now ({exc})") from None
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return sink.getvalue()

    body = await to_thread.run_sync(load, limiter=services.store_limiter)
    return Response(body, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{job_id}-best.zip"'})


@router.get("/best", response_model=BestOut, responses={409: {"description": "No evaluated trial yet"}})
def best(job_id: str, user: CurrentUser, session: SessionDep) -> BestOut:
    """The best evaluated genotype (highest test top-1), its metrics, and BOHB's best configuration."""
    job = get_job(session, job_id, viewer=user)
    found = best_of_job(job.id, _all_rows(session, job, None))
    if found is None:
        raise Problem(409, f"job {job.id} ({job.status}) has no succeeded evaluation yet")
    trial = TrialOut.model_validate({k: v for k, v in found["trial"].items() if k in TrialOut.model_fields})
    return BestOut(**(found | {"trial": trial}))
