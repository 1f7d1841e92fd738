"""The queue's rounds: which queued jobs of the store go to Ray now, started as their next attempt.

:func:`schedule` gathers what api/queue.py's pure decision needs (the queued jobs, what the running ones
hold, each user's quota and usage, the cluster's free resources), takes each admitted job in one
conditional UPDATE (of rounds running at once, in one server or several, one wins) and hands it to
Ray; the others keep, as their ``queue_reason``, why they wait. The routes run a round after every
submission and the app's loop every few seconds (api/app.py). A claim whose round never finished
(its server or database stopped before the Ray job was stored) is settled by a later round from
what Ray has (:func:`_recover_stranded`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.jobstore import set_status
from api.models import Job, User, utcnow
from api.queue import Candidate, Holding, Quota, plan_admissions, quota_for
from api.runner import AGENT_WAIT_SECONDS, RayJobNotFound, RayJobs, RayUnavailable
from api.service import asked_attempt, mark_attempt_started
from api.settings import Settings
from api.status import ACTIVE_STATUSES
from api.usage import user_gpu_hours
from trials.spec import GridSpec

if TYPE_CHECKING:
    from api.cluster import NodeResources

__all__ = ["schedule", "user_quota"]

log = logging.getLogger(__name__)

# A round hands a claimed job to Ray within this (stopping its previous Ray job, then waiting up to
# AGENT_WAIT_SECONDS for an agent); a claim older than this, with no Ray job stored, was stranded.
CLAIM_GRACE_SECONDS = 3 * AGENT_WAIT_SECONDS + 60


def _candidate(job: Job, cpu_only: bool) -> Candidate:
    spec = GridSpec.model_validate_json(job.spec_json)
    return Candidate(
        job_id=job.id, user=job.owner.name, priority=job.priority, created_at=job.created_at,
        gpus_per_trial=0.0 if cpu_only else spec.resources.gpus_per_trial,
        cpus_per_trial=spec.resources.cpus_per_trial, n_trials=job.n_trials,
        max_concurrent=spec.max_concurrent_trials, not_before=job.next_attempt_at,
    )


def user_quota(user: User, settings: Settings) -> Quota:
    """The user's quota: the service's settings, with what an admin set for this user."""
    default = Quota(settings.max_running_jobs_per_user, settings.max_gpus_per_user, settings.max_gpu_hours_per_user)
    return quota_for(default, user.max_running_jobs, user.max_gpus, user.max_gpu_hours)


def schedule(s: Session, ray: RayJobs, settings: Settings, nodes: list[NodeResources] | None) -> int:
    """One round of the queue: admit what :func:`plan_admissions` allows, note why the rest waits.

    ``nodes``: the cluster's nodes now; None when they could not be read: then jobs are admitted on
    their order and quotas alone if the Jobs API answers, and none if it does not. Returns the
    number of jobs handed to Ray.
    """
    _recover_stranded(s, ray)
    waiting = s.scalars(select(Job).where(Job.status == "queued", Job.admitted_at.is_(None))).all()
    if not waiting:
        return 0
    if nodes is None and not ray.reachable():
        _note(s, waiting, {job.id: "waiting: the Ray cluster does not answer" for job in waiting})
        return 0
    live = [n for n in nodes or [] if n.alive]
    cpu_only = settings.cpu_fallback and not any(n.total.get("GPU", 0) for n in live)
    holders = s.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None))).all()
    users = {job.owner.name: job.owner for job in [*waiting, *holders]}
    since = utcnow() - timedelta(days=30)
    answers = plan_admissions(
        [_candidate(job, cpu_only) for job in waiting],
        [Holding(job.owner.name, job.gpus) for job in holders],
        {name: user_quota(user, settings) for name, user in users.items()},
        {name: user_gpu_hours(s, user, since) for name, user in users.items()},
        # a node that has not reported its usage yet (available empty): taken as wholly free
        [n.available or n.total for n in live] if settings.admit_on_free_resources and nodes is not None else None,
        now=utcnow(), total_gpus=sum(n.total.get("GPU", 0.0) for n in live) if nodes is not None else None,
    )
    by_id = {job.id: job for job in waiting}
    admitted = 0
    for answer in answers:
        job = by_id[answer.job_id]
        if not answer.admit:
            continue
        claim = _claim(s, job)
        if claim is None:
            continue  # another round (a submit's, the loop's, another server's) took it first
        job.gpus = answer.gpus
        _cap_concurrency(job, answer.max_concurrent)
        _start(s, ray, job, claim.previous)
        admitted += job.status == "queued" and job.admitted_at is not None
    _note(s, waiting, {a.job_id: a.reason for a in answers if not a.admit})
    return admitted


@dataclass(frozen=True)
class Claim:
    """This round took the job; ``previous``: its last Ray job, to stop first (None for a first attempt)."""

    previous: str | None


def _claim(s: Session, job: Job) -> Claim | None:
    """Take the queued job for this round, in one conditional UPDATE: of rounds running at once, one wins.

    The job's Ray job id is cleared in the same UPDATE, so that nothing reconciles it with its previous
    Ray job (which ended: a resumed or extended job would read as ended too) before its new one exists.
    Returns None when another round took it.
    """
    previous = job.ray_job_id
    taken = s.execute(update(Job).where(Job.id == job.id, Job.status == "queued", Job.admitted_at.is_(None))
                      .values(admitted_at=utcnow(), ray_job_id=None)
                      .execution_options(synchronize_session=False)).rowcount
    s.commit()
    s.refresh(job)
    return Claim(previous) if taken == 1 else None


def _cap_concurrency(job: Job, max_concurrent: int | None) -> None:
    """The driver keeps to the trials at once the queue granted (the user's GPU quota)."""
    spec = json.loads(job.spec_json)
    if max_concurrent is not None and spec.get("max_concurrent_trials") != max_concurrent:
        spec["max_concurrent_trials"] = max_concurrent
        job.spec_json = json.dumps(spec)


def _note(s: Session, jobs: Iterable[Job], reasons: dict[str, str | None]) -> None:
    changed = False
    for job in jobs:
        if job.id in reasons and job.queue_reason != reasons[job.id]:
            job.queue_reason = reasons[job.id]
            changed = True
    if changed:
        s.commit()


def _start(s: Session, ray: RayJobs, job: Job, previous: str | None) -> None:
    """Hand the job to Ray: its asked attempt's driver, which resumes from the checkpoints unless it is the
    first; ``previous``: the job's last Ray job, stopped first."""
    attempt = asked_attempt(job)
    if previous:  # a driver that outlived its job's failure must not run beside the new one
        try:
            ray.stop(previous)
        except Exception as exc:  # gone with its head, or already ended: nothing to stop
            log.info("stopping Ray job %s before attempt %d: %s", previous, attempt["attempt"], exc)
    now = utcnow()
    mark_attempt_started(job, now)
    job.admitted_at, job.queue_reason, job.next_attempt_at = now, None, None
    # The new driver also claims the job's lease (trials/storage.py): an old one that still runs
    # somewhere stops writing as soon as it sees it.
    try:
        job.ray_job_id = ray.submit(job.id, job.spec_json, attempt=attempt["attempt"], resume=attempt["attempt"] > 1,
                                    mode=attempt.get("mode"))
    except RayUnavailable as exc:  # no answer, or a head still starting: the job waits for the next round
        mark_attempt_started(job, None)
        job.admitted_at = None
        job.queue_reason = f"waiting: the Ray Jobs API did not take the job yet ({exc}); the queue tries again"
        s.commit()
        return
    except Exception as exc:  # the Jobs API refused it: the job is stored, and failed
        s.commit()
        set_status(s, job, "failed", error=f"the Ray Jobs API did not take the job: {exc}")
        return
    s.commit()


def _recover_stranded(s: Session, ray: RayJobs) -> None:
    """Claims a round never finished: a job claimed (``admitted_at``) whose Ray job was never stored,
    because the server or its database stopped between the claim and the commit after the submission.
    Left so, the job would stay queued for good (no round takes a claimed job, nothing reconciles a
    job without a Ray job); the fault schedule (bench/faults.py) met one. The submission id of an
    attempt is fixed (``<job>-<attempt>``), so Ray says which: the driver was started (the job follows
    it) or not (the claim is released and the next round starts the attempt)."""
    cutoff = utcnow() - timedelta(seconds=CLAIM_GRACE_SECONDS)
    stranded = s.scalars(select(Job).where(Job.status == "queued", Job.admitted_at.is_not(None),
                                           Job.admitted_at < cutoff, Job.ray_job_id.is_(None))).all()
    for job in stranded:
        submission = f"{job.id}-{asked_attempt(job)['attempt']}"  # the attempt the round handed Ray
        try:
            ray.state(submission)
        except RayUnavailable:  # the next round asks again
            continue
        except RayJobNotFound:
            log.warning("job %s: claimed by a round that did not finish, and Ray has no %s: queued again",
                        job.id, submission)
            job.admitted_at = None
            job.queue_reason = "waiting: a round of the queue stopped while handing the job to Ray; it tries again"
            s.commit()
            continue
        mark_attempt_started(job, job.admitted_at)
        job.ray_job_id, job.queue_reason, job.next_attempt_at = submission, None, None
        log.warning("job %s: a round of the queue stopped after starting Ray job %s: the job follows it",
                    job.id, submission)
        s.commit()

