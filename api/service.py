"""What the routes do, without HTTP: accept a grid, start, cancel and resume its Ray job,
and reconcile the store with Ray (status, progress, result rows).

The store owns every job: an accepted job waits ``queued`` until the queue (api/admission.py's
``schedule``, deciding by api/queue.py) hands it to Ray; Ray is only where it runs. A running job's status is reconciled
from its Ray job (every few seconds, and on every read of the job), so a service restarted while
jobs run finds them as they are; a job whose driver Ray lost goes back to the queue and resumes
from its checkpoints by itself.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adf_service.features.manifest import FeatureStoreError, load_manifest
from adf_service.modalities import MODALITIES
from api.jobstore import (
    InvalidTransition,
    JobNotFound,
    create_job,
    echoed,
    get_job,
    replace_trials,
    set_progress,
    set_status,
)
from api.models import Job, TrialRow, User, utcnow
from api.notify import refused_notify_url
from api.runner import RayJobNotFound, RayJobs, RayUnavailable
from api.settings import Settings
from api.status import ACTIVE_STATUSES
from trials.expand import ray_trial_counts
from trials.pending import pending_notice
from trials.results import STAGES, ResultTableError, read_table
from trials.spec import GridSpec
from trials.storage import JobStorage, read_progress

__all__ = [
    "DatasetRefused", "NothingToDo", "accept_grid", "ask_attempt", "asked_attempt", "attempts", "cancel_job", "extend_job", "import_results",
    "mark_attempt_started", "place_dataset", "place_reuse", "place_transfer", "place_warm_start", "reconcile", "reconcile_active", "rerun_job", "resume_job",
    "server_spec",
]

if TYPE_CHECKING:
    pass

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
    try:  # a NUL byte (ValueError), a name longer than the filesystem takes (OSError): no path to read
        resolved = (settings.data_dir / path).resolve()  # an absolute path replaces data_dir
        inside = any(resolved.is_relative_to(root) for root in settings.store_roots)
        found = inside and resolved.exists()
    except (OSError, ValueError) as exc:
        raise DatasetRefused("dataset.store", f"{echoed(raw)} is not a path this service can read "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    if not inside:
        raise DatasetRefused("dataset.store", f"{echoed(raw)} resolves to {echoed(str(resolved))}, outside "
                             f"this service's data roots: {roots} (ADF_DATA_ROOTS)")
    if found:
        try:
            available = load_manifest(resolved).modalities
        except FeatureStoreError as exc:
            raise DatasetRefused("dataset.store", str(exc)) from None
    elif spec.dataset.synthetic is not None:
        available = list(MODALITIES)  # the synthetic store has every modality
    else:
        raise DatasetRefused("dataset.store", f"no feature store at {str(resolved)!r}, and no dataset.synthetic "
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
    source = _succeeded_job(s, owner, spec.transfer.from_job, "transfer.from_job", "a transfer takes the "
                            "genotypes of a succeeded job")
    transfer = spec.transfer.model_copy(update={"from_job": source.storage_dir})
    return spec.model_copy(update={"transfer": transfer})


def place_warm_start(s: Session, owner: User, spec: GridSpec) -> GridSpec:
    """The spec with each ``bohb.warm_start`` entry resolved to a job's storage: through the service,
    they are ids of the submitter's succeeded jobs (an admin: anyone's) with BOHB rows, refused as
    :func:`place_transfer` refuses (DatasetRefused naming ``bohb.warm_start[i]``, a 422)."""
    if not spec.bohb.enabled or not spec.bohb.warm_start:
        return spec
    dirs = []
    for i, raw in enumerate(spec.bohb.warm_start):
        key = f"bohb.warm_start[{i}]"
        source = _succeeded_job(s, owner, raw, key, "a warm start takes the BOHB results of a succeeded job")
        bohb_rows = select(func.count()).select_from(TrialRow).where(
            TrialRow.job_id == source.id, TrialRow.stage == "bohb")
        if not s.scalar(bohb_rows):
            raise DatasetRefused(key, f"job {source.id} has no BOHB results to warm-start from")
        dirs.append(source.storage_dir)
    return spec.model_copy(update={"bohb": spec.bohb.model_copy(update={"warm_start": dirs})})


def place_reuse(s: Session, owner: User, spec: GridSpec) -> GridSpec:
    """The spec with each ``reuse_from`` entry resolved to a job's storage: through the service, they are
    ids of the submitter's succeeded jobs (an admin: anyone's), refused as :func:`place_transfer` refuses
    (DatasetRefused naming ``reuse_from[i]``, a 422)."""
    dirs = [_succeeded_job(s, owner, raw, f"reuse_from[{i}]", "a job reuses the trials of a succeeded job").storage_dir
            for i, raw in enumerate(spec.reuse_from)]
    return spec.model_copy(update={"reuse_from": dirs}) if dirs else spec


def _succeeded_job(s: Session, owner: User, raw: str, key: str, why: str) -> Job:
    """The succeeded job ``raw`` names by id, ``owner``'s (an admin: anyone's); else DatasetRefused at ``key``."""
    if "/" in raw or "://" in raw or "\\" in raw:
        raise DatasetRefused(key, f"{echoed(raw)}: name one of your finished jobs by its id "
                             "(`adf-service list`); paths and URIs are not taken by this service")
    try:
        source = get_job(s, raw, viewer=owner)
    except JobNotFound:
        raise DatasetRefused(key, f"no job {echoed(raw)} of yours") from None
    if source.status != "succeeded":
        raise DatasetRefused(key, f"job {source.id} is {source.status}: {why}")
    return source


def server_spec(spec: GridSpec, settings: Settings) -> GridSpec:
    """The spec as the service runs it: its dataset placed (:func:`place_dataset`), its storage, and
    CPU trials allowed where the service's Ray is one machine (``settings.cpu_fallback``).

    Raises DatasetRefused for a ``notify_url`` the service will not POST to (api/notify.py, SSRF)."""
    if spec.notify_url is not None:
        refused = refused_notify_url(spec.notify_url, allow_private=settings.notify_allow_private)
        if refused is not None:
            raise DatasetRefused("notify_url", refused)
    spec = place_dataset(spec, settings)
    if settings.cpu_fallback:
        spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"allow_cpu_fallback": True})})
    return spec.model_copy(update={"storage": str(settings.storage_dir)})


def accept_grid(
    s: Session, ray: RayJobs, settings: Settings, *, owner: User, spec: GridSpec,
    request_hash: str, idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Store the job, queued; an idempotent repeat returns the first job. The queue
    (api/admission.py's ``schedule``) hands it to Ray when its turn comes, its quota allows and the cluster has room.

    ``spec`` is the grid as the service runs it (:func:`server_spec`).
    """
    job, created = create_job(
        s, owner=owner, name=spec.name, spec_json=spec.model_dump_json(), request_hash=request_hash,
        n_trials=sum(ray_trial_counts(spec).values()), storage_root=settings.storage_dir, idempotency_key=idempotency_key,
        notify_url=spec.notify_url,
    )
    if created:
        job.priority = spec.priority
        job.queue_reason = "waiting for the queue"
        s.commit()
    return job, created


def attempts(job: Job) -> list[dict[str, Any]]:
    """The job's driver attempts, oldest first: ``{attempt, at, by, reason, started_at}`` each; the last
    one's ``started_at`` is None while it waits in the queue."""
    return json.loads(job.attempts_json or "[]")


def ask_attempt(job: Job, by: str, reason: str, mode: str | None = None) -> None:
    """Record the job's next attempt, asked now; the queue starts it (:func:`_start`). ``mode``: how its
    driver runs (api/runner.py RayJobs.submit): None (the first starts, a later one resumes), "rerun"
    (the failed trials again), "extend" (the trials more repeats add)."""
    done = [a for a in attempts(job) if a.get("started_at") is not None]  # an unstarted ask is replaced
    if mode is None and done and done[-1].get("mode") == "extend" and job.status != "succeeded":
        mode = "extend"  # resuming an extension that did not end: its driver must know it extends
    # A job from before attempts were recorded numbers its next after its last Ray submission (<job>-<n>)
    earlier = int(job.ray_job_id.rsplit("-", 1)[1]) if job.ray_job_id else 0
    number = max([earlier, *(a["attempt"] for a in done)]) + 1
    asked = {"attempt": number, "at": utcnow().isoformat(), "by": by, "reason": reason,
             **({"mode": mode} if mode else {}), "started_at": None}
    job.attempts_json = json.dumps([*done, asked])


def asked_attempt(job: Job) -> dict[str, Any]:
    """The job's attempt that is asked and not started: the one a request asked, else one the service
    asks now ("admitted"). The queue hands this one to Ray (api/admission.py)."""
    if not attempts(job) or attempts(job)[-1].get("started_at") is not None:
        ask_attempt(job, "service", "admitted")
    return attempts(job)[-1]


def mark_attempt_started(job: Job, at: datetime | None) -> None:
    """Record the job's last attempt as started at ``at`` (None: it did not start after all)."""
    *done, attempt = attempts(job)
    attempt["started_at"] = at.isoformat() if at is not None else None
    job.attempts_json = json.dumps([*done, attempt])


def cancel_job(s: Session, ray: RayJobs, job: Job) -> Job:
    """Stop the job's Ray job (its driver and, with it, its trials) and mark it cancelled."""
    set_status(s, job, "cancelled")  # raises InvalidTransition for a finished job
    job.queue_reason = job.next_attempt_at = None
    s.commit()
    if job.ray_job_id:
        try:
            ray.stop(job.ray_job_id)
        except Exception as exc:  # already gone: nothing left to stop
            log.warning("stopping Ray job %s: %s", job.ray_job_id, exc)
    return job


def resume_job(s: Session, ray: RayJobs, job: Job, *, by: str = "user") -> Job:
    """A failed or cancelled job goes back to the queue, to go on from its checkpoints in a new Ray job.

    Raises InvalidTransition for any other (a succeeded job's failed trials: :func:`rerun_job`).
    """
    if job.status not in ("failed", "cancelled"):
        raise InvalidTransition(f"job {job.id}: cannot resume a {job.status} job: resume takes a failed or "
                                "cancelled one" + (" (rerun its failed trials: rerun)" if job.status == "succeeded"
                                                   else ""))
    set_status(s, job, "queued")
    job.admitted_at, job.auto_resumes, job.next_attempt_at = None, 0, None
    job.queue_reason = "waiting for the queue"
    ask_attempt(job, by, "resumed by hand")
    s.commit()
    return job


class NothingToDo(ValueError):
    """A rerun of a job none of whose trials failed, or an extension of a job that has not succeeded (a 409)."""


def rerun_job(s: Session, job: Job, *, by: str) -> Job:
    """Back to the queue, to run the job's failed and unfinished trials again from scratch, keeping the rest.

    Raises NothingToDo for a running or queued job, and for a succeeded job without a failed row.
    """
    if job.status in ACTIVE_STATUSES:
        raise NothingToDo(f"job {job.id} is {job.status}: a rerun takes a job that has ended")
    failed = s.scalar(select(func.count()).select_from(TrialRow).where(
        TrialRow.job_id == job.id, TrialRow.status == "failed")) or 0
    if job.status == "succeeded" and not failed:
        raise NothingToDo(f"job {job.id} succeeded with no failed trial: nothing to rerun")
    set_status(s, job, "queued")
    job.admitted_at, job.auto_resumes, job.next_attempt_at = None, 0, None
    job.queue_reason = "waiting for the queue"
    what = f"{failed} failed trial{'s' * (failed != 1)}" if failed else "its unfinished trials"
    ask_attempt(job, by, f"rerun of {what}", mode="rerun")
    s.commit()
    return job


def extend_job(s: Session, job: Job, *, repeats: int, by: str, max_trials: int) -> Job:
    """Back to the queue with ``repeats`` more repeats (new seeds) of each searched setting; what exists stays.

    Raises NothingToDo unless the job succeeded, and ValueError when the grid would exceed ``max_trials``.
    """
    if job.status != "succeeded":
        raise NothingToDo(f"job {job.id} is {job.status}: more repeats extend a succeeded job")
    spec = GridSpec.model_validate_json(job.spec_json)
    grown = spec.model_copy(update={"repeats": spec.repeats + repeats})
    n_trials = sum(ray_trial_counts(grown).values())
    if n_trials > min(max_trials, grown.max_trials):
        raise ValueError(f"repeats: {grown.repeats} repeats make {n_trials:,} trials, more than the "
                         f"limit of {min(max_trials, grown.max_trials):,}")
    set_status(s, job, "queued")
    job.spec_json, job.n_trials = grown.model_dump_json(), n_trials
    job.admitted_at, job.auto_resumes, job.next_attempt_at = None, 0, None
    job.queue_reason = "waiting for the queue"
    ask_attempt(job, by, f"{repeats} more repeat{'s' * (repeats != 1)} (repeats {spec.repeats} → {grown.repeats})",
                 mode="extend")
    s.commit()
    return job


def import_results(s: Session, job: Job) -> int:
    """Copy the job's Parquet result tables into the store's trial rows."""
    storage = JobStorage.at(job.storage_dir)
    rows: list[dict[str, Any]] = []
    for stage in STAGES:
        if storage.exists("results", f"{stage}.parquet"):
            rows += read_table(storage, stage).to_pylist()
    return replace_trials(s, job, rows)


def reconcile(s: Session, ray: RayJobs, job: Job, settings: Settings | None = None) -> Job:
    """Bring one admitted job up to date with its Ray job and its progress file.

    A job whose driver Ray lost (:attr:`RayJobState.lost`, or a cluster that answers without
    the job) goes back to the queue to resume by itself, ``settings.auto_resume_attempts`` times
    with a doubling backoff, before it is failed.
    """
    if job.status not in ACTIVE_STATUSES or not job.ray_job_id or job.admitted_at is None:
        return job
    settings = settings or Settings()
    storage = JobStorage.at(job.storage_dir)
    progress = read_progress(storage)
    if progress is not None:
        set_progress(s, job, progress, stale_after_s=settings.stale_trial_seconds, notice=pending_notice(storage))
    try:
        state = ray.state(job.ray_job_id)
    except RayUnavailable:  # a head lost or restarting: the job keeps its status (docs/rest.md)
        return job
    except RayJobNotFound as exc:  # the cluster answers without the job (e.g. a new cluster)
        return _lost(s, job, str(exc), settings)
    if state.lost:
        return _lost(s, job, state.message or "Ray lost the job's driver", settings)
    status, message = state.status, state.message
    if status == job.status:
        return job
    if status == "succeeded":
        # The queue's round and a request may reconcile the job at once: one imports, the other then
        # finds it done (PostgreSQL: the row lock; the fault schedule saw both insert the rows)
        s.refresh(job, with_for_update=True)
        if job.status == status:
            s.commit()
            return job
        try:
            import_results(s, job)
        except ResultTableError as exc:  # the files stay as they are, for a person to look at
            status, message = "failed", f"the job's driver ended, but its results cannot be read: {exc}"
    if status != "queued":
        if job.status == "queued" and status != "cancelled":
            set_status(s, job, "running")
        if status != "running":
            set_status(s, job, status, error=message)
    return job


def _lost(s: Session, job: Job, why: str, settings: Settings) -> Job:
    """Ray lost the job's driver: queue an automatic resume after a backoff, or fail the job when
    the automatic resumes are spent."""
    if job.auto_resumes >= settings.auto_resume_attempts:
        tries = f"after {job.auto_resumes} automatic resume{'s' * (job.auto_resumes != 1)}"
        return set_status(s, job, "failed", error=f"Ray lost the job's driver {tries}: {why}; "
                          "`adf-service resume` tries again")
    job.auto_resumes += 1
    delay = settings.auto_resume_backoff_seconds * 2 ** (job.auto_resumes - 1)
    if job.status == "running":  # else admitted, and lost before Ray started it: still queued
        set_status(s, job, "queued")
    job.error, job.admitted_at = None, None
    ask_attempt(job, "service", f"Ray lost the job's driver: {why[:300]}")
    job.next_attempt_at = utcnow() + timedelta(seconds=delay)
    job.queue_reason = (f"Ray lost the job's driver ({why[:300]}): resumes automatically "
                        f"({job.auto_resumes} of {settings.auto_resume_attempts}) after {delay:g} s")
    s.commit()
    log.warning("job %s: %s", job.id, job.queue_reason)
    return job


def reconcile_active(s: Session, ray: RayJobs, settings: Settings | None = None) -> int:
    jobs = s.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES))).all()
    for job in jobs:
        try:
            reconcile(s, ray, job, settings)
        except Exception:
            s.rollback()
            log.exception("reconciling job %s", job.id)
    return len(jobs)

