"""What the routes do, without HTTP: accept a grid, start, cancel and resume its Ray job,
and reconcile the store with Ray (status, progress, result rows).

The store is the service's memory, Ray is the truth about running jobs: a job's status is
reconciled from its Ray job (every few seconds, and on every read of the job), so a service
restarted while jobs run finds them as they are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.jobstore import create_job, replace_trials, set_progress, set_status
from api.models import Job, User
from api.runner import RayJobs, RayUnavailable
from api.settings import Settings
from trials.expand import ray_trial_counts
from trials.progress import read_progress
from trials.results import STAGES, read_table
from trials.spec import GridSpec
from trials.storage import JobStorage

__all__ = ["accept_grid", "bohb_best", "cancel_job", "import_results", "reconcile", "reconcile_active", "resume_job"]

log = logging.getLogger(__name__)


def server_spec(spec: GridSpec, settings: Settings) -> GridSpec:
    """The spec as the service runs it: its storage, and a store path relative to data_dir."""
    store = Path(spec.dataset.store).expanduser()
    if not store.is_absolute():
        store = settings.data_dir / store
    dataset = spec.dataset.model_copy(update={"store": str(store)})
    return spec.model_copy(update={"dataset": dataset, "storage": str(settings.storage_dir)})


def accept_grid(
    s: Session, ray: RayJobs, settings: Settings, *, owner: User, spec: GridSpec,
    request_hash: str, idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Store the job and start its Ray job; an idempotent repeat returns the first job."""
    spec = server_spec(spec, settings)
    job, created = create_job(
        s, owner=owner, name=spec.name, spec_json=spec.model_dump_json(), request_hash=request_hash,
        n_trials=sum(ray_trial_counts(spec).values()), storage_root=settings.storage_dir, idempotency_key=idempotency_key,
    )
    if created:
        _start(s, ray, job, attempt=1, resume=False)
    return job, created


def _start(s: Session, ray: RayJobs, job: Job, *, attempt: int, resume: bool) -> None:
    try:
        submission = ray.submit(job.id, job.spec_json, attempt=attempt, resume=resume)
    except Exception as exc:  # the Jobs API refused or is down: the job is stored, and failed
        set_status(s, job, "failed", error=f"the Ray Jobs API did not take the job: {exc}")
        return
    job.ray_job_id = submission
    s.commit()


def cancel_job(s: Session, ray: RayJobs, job: Job) -> Job:
    """Stop the job's Ray job (its driver and, with it, its trials) and mark it cancelled."""
    set_status(s, job, "cancelled")  # raises InvalidTransition for a finished job
    if job.ray_job_id:
        try:
            ray.stop(job.ray_job_id)
        except Exception as exc:  # already gone: nothing left to stop
            log.warning("stopping Ray job %s: %s", job.ray_job_id, exc)
    return job


def resume_job(s: Session, ray: RayJobs, job: Job) -> Job:
    """A failed or cancelled job goes on from its checkpoints in a new Ray job."""
    set_status(s, job, "queued")  # raises InvalidTransition unless failed/cancelled
    attempt = int(job.ray_job_id.rsplit("-", 1)[1]) + 1 if job.ray_job_id else 1
    _start(s, ray, job, attempt=attempt, resume=True)
    return job


def import_results(s: Session, job: Job) -> int:
    """Copy the job's Parquet result tables into the store's trial rows."""
    storage = JobStorage.at(job.storage_dir)
    rows: list[dict[str, Any]] = []
    for stage in STAGES:
        if storage.exists("results", f"{stage}.parquet"):
            rows += read_table(storage, stage).to_pylist()
    return replace_trials(s, job, rows)


def reconcile(s: Session, ray: RayJobs, job: Job) -> Job:
    """Bring one queued/running job up to date with its Ray job and its progress file."""
    if job.status not in ("queued", "running") or not job.ray_job_id:
        return job
    progress = read_progress(JobStorage.at(job.storage_dir))
    if progress is not None:
        set_progress(s, job, progress)
    try:
        status, message = ray.status(job.ray_job_id)
    except RayUnavailable:
        return job
    except Exception as exc:  # the Ray job is unknown to the cluster (e.g. a new cluster)
        set_status(s, job, "failed", error=f"Ray has no job {job.ray_job_id}: {exc}")
        return job
    if status == job.status:
        return job
    if status == "succeeded":
        import_results(s, job)
    if status != "queued":
        if job.status == "queued" and status == "succeeded":
            set_status(s, job, "running")
        set_status(s, job, status, error=message)
    return job


def reconcile_active(s: Session, ray: RayJobs) -> int:
    jobs = s.scalars(select(Job).where(Job.status.in_(("queued", "running")))).all()
    for job in jobs:
        try:
            reconcile(s, ray, job)
        except Exception:
            s.rollback()
            log.exception("reconciling job %s", job.id)
    return len(jobs)


def bohb_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    bohb = [r for r in rows if r["stage"] == "bohb" and r["status"] == "succeeded"]
    if not bohb:
        return None
    top = min(bohb, key=lambda r: r["val_loss"])
    config = json.loads(top["config"] or "{}").get("evaluation", {})
    keys = ("batch_size", "lr", "optimizer", "weight_decay", "epochs")
    return {"config": {k: config.get(k) for k in keys}, "trial_id": top["trial_id"],
            "val_loss": top["val_loss"], "test_top1": top["test_top1"]}
