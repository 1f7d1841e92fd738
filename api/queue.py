"""The service's queue: which queued jobs go to Ray now, and why the others wait.

A pure decision (no store, no Ray): :func:`plan_admissions` takes the queued jobs, what the
running ones hold, each user's quota and usage, and the cluster's free resources, and says
for every queued job whether it is admitted and, if not, why (the reason its status shows).
api/service.py gathers those inputs and acts on the answer; tests drive it with a fake cluster.

The order is the highest ``priority`` first, then submission order. Two kinds of waiting:

- over a **quota** (running jobs, GPUs held at once, GPU-hours in the last 30 days): the job
  waits and the jobs behind it are still considered, since they may belong to other users;
- no **room** on the cluster for one of its trials: the job waits and so does every job
  behind it, so that a job asking for a whole GPU is not starved by a stream of smaller ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "Admission", "Candidate", "Holding", "NeverFits", "Quota", "plan_admissions", "never_fits", "quota_for",
]

_EPS = 1e-9  # fractions of a GPU add up to a little more or less than a whole


@dataclass(frozen=True)
class Quota:
    """What one user may hold; None: no limit."""

    running_jobs: int
    gpus: float | None = None  # held at once by the user's running jobs
    gpu_hours: float | None = None  # used in the last 30 days (api/usage.py)


@dataclass(frozen=True)
class Candidate:
    """A queued job, as the queue sees it."""

    job_id: str
    user: str
    priority: int
    created_at: datetime
    gpus_per_trial: float
    cpus_per_trial: float
    n_trials: int
    max_concurrent: int | None = None  # the grid's max_concurrent_trials
    not_before: datetime | None = None  # an automatic resume's backoff


@dataclass(frozen=True)
class Holding:
    """A running (or just admitted) job: who holds how many GPUs."""

    user: str
    gpus: float


@dataclass(frozen=True)
class Admission:
    """The queue's answer for one candidate.

    ``gpus``: what the job holds at once once admitted (per-trial GPUs × trials at once);
    ``max_concurrent``: the trials at once the job must keep to (its grid's, or what the
    user's GPU quota leaves), None for as many as the cluster fits.
    """

    job_id: str
    admit: bool
    reason: str | None = None
    gpus: float = 0.0
    max_concurrent: int | None = None


@dataclass
class _Room:
    """Free resources per node, used up as this round admits jobs."""

    nodes: list[dict[str, float]] = field(default_factory=list)

    def fits(self, gpus: float, cpus: float) -> int | None:
        for i, free in enumerate(self.nodes):
            if free.get("GPU", 0.0) + _EPS >= gpus and free.get("CPU", 0.0) + _EPS >= cpus:
                return i
        return None

    def take(self, node: int, gpus: float, cpus: float) -> None:
        self.nodes[node] = {**self.nodes[node], "GPU": self.nodes[node].get("GPU", 0.0) - gpus,
                            "CPU": self.nodes[node].get("CPU", 0.0) - cpus}

    def say(self) -> str:
        gpus = sum(max(n.get("GPU", 0.0), 0.0) for n in self.nodes)
        cpus = sum(max(n.get("CPU", 0.0), 0.0) for n in self.nodes)
        return f"{gpus:g} GPU and {cpus:g} CPU free on {len(self.nodes)} node{'s' * (len(self.nodes) != 1)}"


def quota_for(default: Quota, running_jobs: int | None, gpus: float | None, gpu_hours: float | None) -> Quota:
    """A user's quota: the service's default with what an admin set for the user (None: the default)."""
    return Quota(
        running_jobs=default.running_jobs if running_jobs is None else running_jobs,
        gpus=default.gpus if gpus is None else gpus,
        gpu_hours=default.gpu_hours if gpu_hours is None else gpu_hours,
    )


class NeverFits(ValueError):
    """A grid that no quota or cluster this service has could ever run (a 422 at submit)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def never_fits(gpus_per_trial: float, quota: Quota, user: str) -> None:
    """Raise NeverFits when ``user``'s quota could never let one trial of the job run at once."""
    if quota.gpus is not None and gpus_per_trial > quota.gpus + _EPS:
        raise NeverFits("resources.gpus_per_trial", f"a trial asks for {gpus_per_trial:g} GPU, and user "
                        f"{user!r} may hold {quota.gpus:g} GPU at once: ask for fewer, or ask an admin to "
                        "raise the quota")
    if quota.gpu_hours is not None and quota.gpu_hours <= 0 and gpus_per_trial > 0:
        raise NeverFits("resources.gpus_per_trial", f"user {user!r} has a quota of 0 GPU-hours: only CPU "
                        "trials (gpus_per_trial: 0) can run")


def _concurrency(job: Candidate, quota: Quota, held: float) -> tuple[int | None, str | None]:
    """Trials at once the user's GPU quota leaves the job (None: no limit), or why none can start."""
    if quota.gpus is None or job.gpus_per_trial <= 0:
        return job.max_concurrent, None
    fit = math.floor((quota.gpus - held) / job.gpus_per_trial + _EPS)
    if fit < 1:
        return None, (f"over quota: user {job.user!r} holds {held:g} of {quota.gpus:g} GPU at once, and a trial "
                      f"asks for {job.gpus_per_trial:g}")
    return (fit if job.max_concurrent is None else min(fit, job.max_concurrent)), None


def plan_admissions(
    queued: Sequence[Candidate],
    holdings: Sequence[Holding],
    quotas: Mapping[str, Quota],
    gpu_hours_used: Mapping[str, float],
    free: Sequence[Mapping[str, float]] | None,
    *,
    now: datetime,
    total_gpus: float | None = None,
) -> list[Admission]:
    """Decide, for every queued job in queue order, whether it goes to Ray now.

    ``free``: each live node's free resources (``{"GPU": 1.0, "CPU": 4.0}``); None admits without
    looking at the cluster (an autoscaling cluster: there Ray's own queue asks for nodes). ``total_gpus``
    bounds what a job without a concurrency limit holds at once.
    """
    room = _Room([dict(node) for node in free]) if free is not None else None
    running: dict[str, int] = {}
    held: dict[str, float] = {}
    for holding in holdings:
        running[holding.user] = running.get(holding.user, 0) + 1
        held[holding.user] = held.get(holding.user, 0.0) + holding.gpus
    answers: list[Admission] = []
    blocked_by: Candidate | None = None
    for job in sorted(queued, key=lambda j: (-j.priority, j.created_at, j.job_id)):
        quota = quotas[job.user]
        wait = _quota_wait(job, quota, running.get(job.user, 0), gpu_hours_used.get(job.user, 0.0))
        concurrency, over = _concurrency(job, quota, held.get(job.user, 0.0))
        wait = wait or over
        if wait is None and job.not_before is not None and job.not_before > now:
            wait = f"resumes automatically at {job.not_before:%H:%M:%S} UTC (backoff)"
        if wait is None and blocked_by is not None:
            wait = f"behind job {blocked_by.job_id} (priority {blocked_by.priority}), which waits for room"
        if wait is None and room is not None:
            node = room.fits(job.gpus_per_trial, job.cpus_per_trial)
            if node is None:
                wait = (f"waiting for room: a trial asks for {job.gpus_per_trial:g} GPU and {job.cpus_per_trial:g} "
                        f"CPU on one node; the cluster has {room.say()}")
                blocked_by = job
            else:
                room.take(node, job.gpus_per_trial, job.cpus_per_trial)
        if wait is not None:
            answers.append(Admission(job.job_id, False, wait))
            continue
        gpus = _held_at_once(job, concurrency, total_gpus)
        running[job.user] = running.get(job.user, 0) + 1
        held[job.user] = held.get(job.user, 0.0) + gpus
        answers.append(Admission(job.job_id, True, None, gpus, concurrency))
    return answers


def _quota_wait(job: Candidate, quota: Quota, running: int, gpu_hours: float) -> str | None:
    if running >= quota.running_jobs:
        return f"over quota: user {job.user!r} runs {running} of {quota.running_jobs} jobs at once"
    if quota.gpu_hours is not None and job.gpus_per_trial > 0 and gpu_hours >= quota.gpu_hours:
        return (f"over quota: user {job.user!r} used {gpu_hours:.1f} of {quota.gpu_hours:g} GPU-hours in the "
                "last 30 days")
    return None


def _held_at_once(job: Candidate, concurrency: int | None, total_gpus: float | None) -> float:
    trials = job.n_trials if concurrency is None else min(concurrency, job.n_trials)
    gpus = job.gpus_per_trial * trials
    if concurrency is None and total_gpus is not None:
        gpus = min(gpus, total_gpus)
    return gpus

