"""What the routes do, without HTTP: accept a grid, start, cancel and resume its Ray job,
and reconcile the store with Ray (status, progress, result rows).

The store is the service's memory, Ray is the truth about running jobs: a job's status is
reconciled from its Ray job (every few seconds, and on every read of the job), so a service
restarted while jobs run finds them as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from adf_service.features.manifest import FeatureStoreError, load_manifest
from adf_service.modalities import MODALITIES
from api.jobstore import JobNotFound, create_job, echoed, get_job, replace_trials, set_progress, set_status
from api.models import Job, User
from api.runner import RayJobNotFound, RayJobs, RayUnavailable
from api.settings import Settings
from api.status import ACTIVE_STATUSES
from trials.expand import ray_trial_counts
from trials.results import STAGES, read_table
from trials.spec import GridSpec
from trials.storage import JobStorage, read_progress

__all__ = [
    "DatasetRefused", "accept_grid", "cancel_job", "import_results", "place_dataset", "place_transfer", "reconcile",
    "reconcile_active", "resume_job", "server_spec",
]

log = logging.getLogger(__name__)


class DatasetRefused(ValueError):
    """A grid's dataset this service will not run: a store outside its data roots, or modalities it lacks."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def place_dataset(spec: GridSpec, settings: Settings) -> GridSpec:
    """The spec with ``dataset.store`` resolved (relative to data_dir, symlinks followed), once the
    service has checked that it lies under its data roots and has the modalities the grid uses.

    Raises DatasetRefused naming the key: a URI other than ``file://`` (feature stores are
    directories), a store outside ``settings.store_roots``, no store there (and no
    ``dataset.synthetic`` to generate one), or a modality the store does not have.
    """
    raw = spec.dataset.store
    roots = ", ".join(str(root) for root in settings.store_roots)
    scheme, sep, _ = raw.partition("://")
    if sep and scheme.lower() != "file":
        raise DatasetRefused("dataset.store", f"{echoed(raw)} is a {scheme}:// URI; a feature store is a "
                             f"directory under this service's data roots: {roots}")
    path = Path(unquote(urlsplit(raw).path) if sep else raw).expanduser()
    resolved = (settings.data_dir / path).resolve()  # an absolute path replaces data_dir
    if not any(resolved.is_relative_to(root) for root in settings.store_roots):
        raise DatasetRefused("dataset.store", f"{echoed(raw)} resolves to {echoed(str(resolved))}, outside "
                             f"this service's data roots: {roots} (ADF_DATA_ROOTS)")
    if resolved.exists():
        try:
            available = load_manifest(resolved).modalities
        except FeatureStoreError as exc:
            raise DatasetRefused("dataset.store", str(exc)) from None
    elif spec.dataset.synthetic is not None:
        available = list(MODALITIES)  # the synthetic store has every modality
    else:
        raise DatasetRefused("dataset.store", f"no feature store at {resolved}, and no dataset.synthetic "
                             "to generate one there")
    combos = spec.baselines.combos if spec.baselines.enabled else []
    used = spec.dataset.modalities or sorted({m for combo in combos for m in combo})
    missing = [m for m in used if m not in available]
    if missing:
        key = "dataset.modalities" if spec.dataset.modalities else "baselines.combos"
        raise DatasetRefused(key, f"{missing} not in the store at {resolved} (it has {', '.join(available)})")
    return spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"store": str(resolved)})})


def place_transfer(s: Session, owner: User, spec: GridSpec) -> GridSpec:
    """The spec with ``transfer.from_job`` resolved: through the service, a transfer names one of the
    submitter's succeeded jobs by its id (an admin: anyone's), and takes its genotypes from that job's
    storage. A path or a URI is refused, so that a grid cannot read another user's results or probe
    the server's disks (DatasetRefused, a 422)."""
    if not spec.transfer.enabled or spec.transfer.from_job is None:
        return spec
    raw = spec.transfer.from_job
    if "/" in raw or "://" in raw or "\\" in raw:
        raise DatasetRefused("transfer.from_job", f"{echoed(raw)}: name one of your finished jobs by its id "
                             "(`adf-service list`); paths and URIs are not taken by this service")
    try:
        source = get_job(s, raw, viewer=owner)
    except JobNotFound:
        raise DatasetRefused("transfer.from_job", f"no job {echoed(raw)} of yours") from None
    if source.status != "succeeded":
        raise DatasetRefused("transfer.from_job", f"job {source.id} is {source.status}: a transfer takes the "
                             "genotypes of a succeeded job")
    transfer = spec.transfer.model_copy(update={"from_job": source.storage_dir})
    return spec.model_copy(update={"transfer": transfer})


def server_spec(spec: GridSpec, settings: Settings) -> GridSpec:
    """The spec as the service runs it: its dataset placed (:func:`place_dataset`), its storage, and
    CPU trials allowed where the service's Ray is one machine (``settings.cpu_fallback``)."""
    spec = place_dataset(spec, settings)
    if settings.cpu_fallback:
        spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"allow_cpu_fallback": True})})
    return spec.model_copy(update={"storage": str(settings.storage_dir)})


def accept_grid(
    s: Session, ray: RayJobs, settings: Settings, *, owner: User, spec: GridSpec,
    request_hash: str, idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Store the job and start its Ray job; an idempotent repeat returns the first job.

    ``spec`` is the grid as the service runs it (:func:`server_spec`).
    """
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
    if job.ray_job_id:  # a driver that outlived its job's failure must not run beside the new one
        try:
            ray.stop(job.ray_job_id)
        except Exception as exc:  # gone with its head, or already ended: nothing to stop
            log.info("stopping Ray job %s before attempt %d: %s", job.ray_job_id, attempt, exc)
    # The new driver also claims the job's lease (trials/storage.py): an old one that still
    # runs somewhere stops writing as soon as it sees it.
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
    if job.status not in ACTIVE_STATUSES or not job.ray_job_id:
        return job
    progress = read_progress(JobStorage.at(job.storage_dir))
    if progress is not None:
        set_progress(s, job, progress)
    try:
        status, message = ray.status(job.ray_job_id)
    except RayUnavailable:  # a head lost or restarting: the job keeps its status (docs/rest.md)
        return job
    except RayJobNotFound as exc:  # the cluster answers without the job (e.g. a new cluster)
        set_status(s, job, "failed", error=str(exc))
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
    jobs = s.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES))).all()
    for job in jobs:
        try:
            reconcile(s, ray, job)
        except Exception:
            s.rollback()
            log.exception("reconciling job %s", job.id)
    return len(jobs)

