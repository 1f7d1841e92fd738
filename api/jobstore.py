"""The job store: jobs, their status transitions and their imported result rows.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and keeps no state of
its own. Functions that change something commit, like the CRUD functions of the FastAPI
template, so that a job exists (and its idempotency key is taken) once they return.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Collection, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.models import Job, TrialRow, User, utcnow
from api.notify import mark_for_notification
from api.status import ACTIVE_STATUSES, ENDED_STATUSES, JOB_STATUSES
from api.usage import apply_usage, stale_notice
from trials.results import STAGES

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TRIAL_COLUMNS",
    "find_by_key",
    "IdempotencyConflict",
    "InvalidTransition",
    "JobNotFound",
    "JobStoreError",
    "TrialNotFound",
    "count_running",
    "create_job",
    "echoed",
    "get_job",
    "get_trial",
    "hash_request",
    "list_jobs",
    "list_trials",
    "new_job_id",
    "replace_trials",
    "set_progress",
    "set_status",
]

# status → the statuses it may move to (a key for each of JOB_STATUSES); failed/cancelled →
# queued is a resume, running → queued the service's own resume after Ray lost the job's driver,
# succeeded → queued a rerun of its failed trials or an extension with more repeats.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "queued"}),
    "failed": frozenset({"queued"}),
    "cancelled": frozenset({"queued"}),
    "succeeded": frozenset({"queued"}),  # a rerun of its failed trials, or more repeats (api/service.py)
}
_ENDED = frozenset(ENDED_STATUSES)
TRIAL_COLUMNS: tuple[str, ...] = tuple(c.key for c in TrialRow.__table__.columns)
_INSERT_BATCH = 2000  # rows per executemany: bounded memory, few round trips


class JobStoreError(Exception):
    """Base of the job store's errors."""


class IdempotencyConflict(JobStoreError):
    """The idempotency key was already used by this owner for a different request body."""


class JobNotFound(JobStoreError):
    """No such job, or one the viewer may not see (the API answers 404 for both)."""


class TrialNotFound(JobStoreError):
    """No such trial row in the job."""


class InvalidTransition(JobStoreError):
    """A status change the job's life cycle does not allow."""


def new_job_id() -> str:
    return "j" + secrets.token_hex(6)


def hash_request(body: Any) -> str:
    """SHA-256 of a JSON-able request body in canonical form (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    s: Session,
    *,
    owner: User,
    name: str,
    spec_json: str,
    request_hash: str,
    n_trials: int,
    storage_root: str | Path,
    idempotency_key: str | None = None,
    notify_url: str | None = None,
) -> tuple[Job, bool]:
    """Store a queued job; returns ``(job, created)``. ``notify_url``: where its end is POSTed (api/notify.py).

    With an ``idempotency_key`` already used by ``owner``: the same ``request_hash`` returns
    the existing job with ``created=False``, another raises :class:`IdempotencyConflict`.
    The insert is tried first and the unique (owner, key) constraint decides, so concurrent
    submissions with one key make one job. Rolls back the session's pending work on a repeat.
    """
    owner_id = owner.id
    job_id = new_job_id()
    job = Job(
        id=job_id,
        owner_id=owner_id,
        name=name,
        status="queued",
        spec_json=spec_json,
        request_hash=request_hash,
        idempotency_key=idempotency_key,
        storage_dir=f"{str(storage_root).rstrip('/')}/{job_id}",  # a path or a URI
        n_trials=n_trials,
        progress_json="{}",
        notify_url=notify_url,
    )
    s.add(job)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        if idempotency_key is None:
            raise
        existing = s.scalars(
            select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == idempotency_key)
        ).one_or_none()
        if existing is None:  # not our key that collided
            raise
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} was used for job {existing.id} with a different "
                f"request body; use a new key for a new job"
            ) from None
        return existing, False
    return job, True


def find_by_key(s: Session, owner: User, idempotency_key: str) -> Job | None:
    """The owner's job made with ``idempotency_key``, if any."""
    return s.scalars(
        select(Job).where(Job.owner_id == owner.id, Job.idempotency_key == idempotency_key)
    ).one_or_none()


ECHO_CHARS = 64  # what an error message repeats of an id a request sent


def echoed(value: str, limit: int = ECHO_CHARS) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters (and its length said) when longer."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"


def get_job(s: Session, job_id: str, *, viewer: User) -> Job:
    """The job ``job_id`` if ``viewer`` owns it or is an admin, else :class:`JobNotFound`."""
    job = s.get(Job, job_id)
    if job is None or not (viewer.is_admin or job.owner_id == viewer.id):
        raise JobNotFound(f"no job {echoed(job_id)}")
    return job


def _visible_jobs(viewer: User, status: str | None) -> list[ColumnElement[bool]]:
    where = [] if viewer.is_admin else [Job.owner_id == viewer.id]
    if status is not None:
        if status not in JOB_STATUSES:
            raise JobStoreError(f"status {status!r} not in {{{', '.join(JOB_STATUSES)}}}")
        where.append(Job.status == status)
    return where


def list_jobs(
    s: Session, *, viewer: User, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Job], int]:
    """The viewer's jobs (an admin's: everyone's), newest first: ``(page, total)``."""
    where = _visible_jobs(viewer, status)
    total = s.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    page = s.scalars(
        select(Job).where(*where).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(page), total


def set_status(
    s: Session, job: Job, status: str, *, error: str | None = None, ray_job_id: str | None = None
) -> Job:
    """Move ``job`` to ``status`` as :data:`ALLOWED_TRANSITIONS` permits, stamping the times.

    ``running`` sets ``started_at``; a finished status sets ``ended_at``; back to ``queued``
    (resume) clears both. ``error`` is the job's error from now on (None clears it);
    ``ray_job_id``, when given, replaces the stored one.
    """
    if status not in JOB_STATUSES:
        raise InvalidTransition(
            f"job {job.id}: unknown status {status!r}, not in {{{', '.join(JOB_STATUSES)}}}"
        )
    allowed = ALLOWED_TRANSITIONS[job.status]
    if status not in allowed:
        to = ", ".join(sorted(allowed)) or "nothing, it is final"
        raise InvalidTransition(f"job {job.id}: cannot go from {job.status!r} to {status!r} (allowed: {to})")
    now = utcnow()
    if status == "queued":
        job.started_at = job.ended_at = None
    elif status == "running":
        job.started_at = now
    if status in _ENDED:
        job.ended_at = now
        mark_for_notification(job, now)  # every way a job ends notifies its notify_url
    job.status = status
    job.error = error
    if ray_job_id is not None:
        job.ray_job_id = ray_job_id
    job.updated_at = now
    s.commit()
    return job


def set_progress(s: Session, job: Job, progress: dict[str, Any], *, stale_after_s: float | None = None,
                 notice: str | None = None) -> None:
    """Replace the job's per-stage counts (any JSON object, e.g. ``{"search": {"done": 3, ...}}``), with the
    usage they carry (api/usage.py); the job's notice becomes its stale trials' (no result for
    ``stale_after_s`` seconds; None: not looked for) and ``notice`` (e.g. why its trials wait), or None."""
    job.progress_json = json.dumps(progress, sort_keys=True)
    apply_usage(job, progress)
    stale = stale_notice(progress, time.time(), stale_after_s) if stale_after_s is not None else None
    job.notice = "; ".join(n for n in (stale, notice) if n) or None
    job.updated_at = utcnow()
    s.commit()


def count_running(s: Session, owner: User) -> int:
    """The owner's jobs that are queued or running (compare with max_running_jobs_per_user)."""
    query = (
        select(func.count()).select_from(Job).where(Job.owner_id == owner.id, Job.status.in_(ACTIVE_STATUSES))
    )
    return s.scalar(query) or 0


def _batches(rows: Iterable[dict[str, Any]], job_id: str) -> Iterator[list[dict[str, Any]]]:
    records = ({**{c: row.get(c) for c in TRIAL_COLUMNS}, "job_id": job_id} for row in rows)
    while batch := list(islice(records, _INSERT_BATCH)):
        yield batch


def replace_trials(s: Session, job: Job, rows: Iterable[dict[str, Any]]) -> int:
    """Make ``rows`` (RESULT_SCHEMA dicts, ``job`` ignored) the job's trial rows; returns their count.

    One transaction: a reader sees the old rows or the new ones, never a mix.
    """
    s.execute(delete(TrialRow).where(TrialRow.job_id == job.id))
    n = 0
    for batch in _batches(rows, job.id):
        s.execute(insert(TrialRow.__table__), batch)  # executemany (PostgreSQL: batched multi-row VALUES)
        n += len(batch)
    job.updated_at = job.results_at = utcnow()
    s.commit()
    return n


def _matches(column: Any, value: Any) -> ColumnElement[bool]:
    if isinstance(value, Collection) and not isinstance(value, str):
        return column.in_(list(value))
    return column == value


def _trials_query(job: Job, filters: dict[str, Any]) -> Select[Any]:
    where = [TrialRow.job_id == job.id]
    where += [
        _matches(getattr(TrialRow, name), value) for name, value in filters.items() if value is not None
    ]
    return select(TrialRow).where(*where)


def list_trials(
    s: Session,
    job: Job,
    *,
    stage: str | Collection[str] | None = None,
    operators: str | Collection[str] | None = None,
    discretization: str | Collection[str] | None = None,
    n_inputs: int | Collection[int] | None = None,
    n_cells: int | Collection[int] | None = None,
    status: str | Collection[str] | None = None,
    limit: int | None = 100,
    offset: int = 0,
    after: tuple[str, str] | None = None,
) -> tuple[list[TrialRow], int]:
    """A page of the job's trial rows ordered by (stage, trial_id), and the total that match.

    Each filter takes a value or a collection of values; ``limit=None`` returns every row.
    ``after=(stage, trial_id)`` (the last row of the previous page) pages by key instead of
    ``offset``; ``total`` ignores it.
    """
    filters = dict(
        stage=stage,
        operators=operators,
        discretization=discretization,
        n_inputs=n_inputs,
        n_cells=n_cells,
        status=status,
    )
    query = _trials_query(job, filters)
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    if after is not None:
        query = query.where(tuple_(TrialRow.stage, TrialRow.trial_id) > tuple_(*after))
    page = s.scalars(query.order_by(TrialRow.stage, TrialRow.trial_id).limit(limit).offset(offset)).all()
    return list(page), total


def get_trial(s: Session, job: Job, trial_id: str, *, stage: str | None = None) -> TrialRow:
    """The job's row for ``trial_id``; else :class:`TrialNotFound`.

    A search trial has a "search" and an "evaluation" row; without ``stage`` the row of the
    earlier pipeline stage (trials.results.STAGES order) is returned.
    """
    query = _trials_query(job, {"trial_id": trial_id, "stage": stage})
    rows = s.scalars(query).all()
    if not rows:
        where = f" in stage {stage!r}" if stage is not None else ""
        raise TrialNotFound(f"job {job.id} has no trial {echoed(trial_id)}{where}")
    return min(rows, key=lambda r: STAGES.index(r.stage) if r.stage in STAGES else len(STAGES))
