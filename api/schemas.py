"""Response models of the REST API (separate from the tables in api/models.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.models import Job, TrialRow
from api.status import JobStatus
from api.usage import running_trials, usage_hours

__all__ = [
    "AttemptOut", "ProblemOut", "BestOut", "JobOut", "JobPage", "JobUsageOut", "RunningTrialOut", "StageProgressOut",
    "TrialOut", "TrialPage",
]

class FieldProblem(BaseModel):
    path: str = Field(description="The bad field, e.g. space.cells[0] (a query or body location for others).")
    message: str
    line: int | None = Field(description="Its line in a YAML body, when known.")


class ProblemOut(BaseModel):
    """RFC 9457 problem details: every error answer (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = Field(
        None, description="400, 422: one entry per problem found, at most the first 50, in line order.")
    more_errors: int | None = Field(None, description="How many more problems there were than `errors` lists.")


class StageProgressOut(BaseModel):
    total: int
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    best_test_top1: float | None = None
    unlearned: int = Field(0, description=(
        "Searches whose supernet's validation top-1 never rose clearly above chance (SearchConfig."
        "learned_margin): their genotypes are not counted as searched results."))


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first driver; the Ray submission id is <job>-<attempt>.")
    at: datetime = Field(description="When it was asked for (submitted, resumed, or Ray lost the driver before).")
    by: str = Field(description="'service' (admitted, or resumed automatically) or the user who resumed it.")
    reason: str
    mode: str | None = Field(None, description=(
        "'rerun' (the failed and unfinished trials again) or 'extend' (the trials more repeats add); null: the "
        "first attempt starts the job, a later one resumes it from its checkpoints."))
    started_at: datetime | None = Field(None, description="When the queue handed it to Ray; null while it waits.")


class JobUsageOut(BaseModel):
    """What a job's trials held, over all their attempts (docs/results.md, "Usage")."""

    gpu_hours: float = Field(description="GPU-seconds of every trial attempt / 3600 (a trial's GPUs × its wall time).")
    cpu_hours: float
    lost_gpu_hours: float = Field(description="Of gpu_hours, those of work redone after a failure (restarts).")
    lost_cpu_hours: float
    summary: str | None = Field(None, description=(
        "The same in words, e.g. '14.2 GPU-hours, 3.1 of them lost to restarts'; null before the driver counted."))


class RunningTrialOut(BaseModel):
    trial_key: str = Field(description="A BOHB trial's: its Tune trial id.")
    last_progress_at: datetime = Field(description="Its last result (an epoch), or its start before its first.")
    node_id: str | None = Field(description="The Ray node of its last result; null before its first.")


class JobOut(BaseModel):
    id: str
    name: str
    owner: str
    status: JobStatus
    n_trials: int = Field(description="Ray trials the grid makes (an evaluation runs inside its search trial).")
    progress: dict[str, StageProgressOut] = Field(description="Per stage: trials done, running, pending.")
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    ray_job_id: str | None = Field(description="The Ray Jobs API submission id of the job's driver.")
    dashboard_url: str | None = Field(description="The Ray dashboard's page of this job.")
    report_url: str | None = Field(None, description=(
        "The job's HTML report (GET, same auth as the job), once it has succeeded: tables, figures, genotypes."))
    storage: str = Field(description="Where the job's checkpoints and result tables are.")
    priority: int = Field(0, description="Its place in the queue: higher first, then submission order.")
    queue_reason: str | None = Field(None, description=(
        "Why a queued job waits: its quota, room on the cluster, the jobs ahead, an automatic resume's backoff."))
    gpus: float = Field(0.0, description="GPUs the job holds at once while it runs (trials at once × per trial).")
    attempts: list[AttemptOut] = Field(default_factory=list, description=(
        "Its drivers so far: the first, and every resume (by a user, or by the service after Ray lost one)."))
    usage: JobUsageOut = Field(description="GPU- and CPU-hours of its trials so far, and those lost to restarts.")
    notice: str | None = Field(None, description=(
        "What needs a look, e.g. running trials without a result for longer than the service allows."))
    running_trials: list[RunningTrialOut] = Field(default_factory=list, description=(
        "A running job's running trials, the one without progress for longest first."))
    notification: str | None = Field(None, description=(
        "With a notify_url, the POST of the job's end: 'pending' (with retries left), 'sent' or 'failed'; "
        "null without one or before the job ended."))

    @classmethod
    def of(cls, job: Job, dashboard: str | None) -> JobOut:
        snapshot = json.loads(job.progress_json or "{}")
        progress = snapshot.get("stages", {})
        url = f"{dashboard.rstrip('/')}/#/jobs/{job.ray_job_id}" if dashboard and job.ray_job_id else None
        return cls(
            id=job.id, name=job.name, owner=job.owner.name, status=job.status, n_trials=job.n_trials,
            progress=progress, created_at=job.created_at, started_at=job.started_at, ended_at=job.ended_at,
            error=job.error, ray_job_id=job.ray_job_id, dashboard_url=url, storage=job.storage_dir,
            report_url=f"/v1/jobs/{job.id}/report" if job.status == "succeeded" else None,
            priority=job.priority, queue_reason=job.queue_reason if job.status == "queued" else None, gpus=job.gpus,
            attempts=json.loads(job.attempts_json or "[]"),
            usage=JobUsageOut(**usage_hours(job), summary=(snapshot.get("usage") or {}).get("summary")),
            notice=job.notice, running_trials=running_trials(snapshot) if job.status == "running" else [],
            notification=job.notify_status,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class TrialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: str
    trial_id: str
    trial_key: str | None
    operators: str | None
    discretization: str | None
    n_inputs: int | None
    n_cells: int | None
    modalities: str | None
    repeat: int | None
    seed: int | None
    best_epoch: int | None
    val_loss: float | None
    val_top1: float | None
    test_top1: float | None
    fusion_params: int | None
    total_params: int | None
    fusion_flops: int | None = Field(None, description="FLOPs of one clip's forward pass through the trained "
                                     "network (a multiply-add is 2), as torch.utils.flop_counter counts them")
    learned: bool | None = Field(None, description="search, evaluation: whether the supernet's validation top-1 "
                                 "rose clearly above chance; false: its genotype is no searched result")
    skip_edges: int | None = Field(None, description="the genotype's skip edges (DARTS' skip collapse)")
    wall_seconds: float | None
    device: str | None
    node_id: str | None = Field(None, description="the Ray node id the trial's last epoch ran on")
    status: str
    error: str | None
    reused_from: str | None = Field(None, description="taken from an earlier job instead of run (the grid's "
                                    "reuse_from): '<source job directory>#<trial id>'; null: run by this job")

    @classmethod
    def of(cls, row: TrialRow) -> TrialOut:
        return cls.model_validate(row, from_attributes=True)


class TrialPage(BaseModel):
    items: list[TrialOut]
    total: int
    limit: int
    offset: int


class BestOut(BaseModel):
    job: str
    trial: TrialOut = Field(description="The evaluated genotype with the best test top-1 (Table 4's best run).")
    genotype: dict[str, Any]
    bohb: dict[str, Any] | None = Field(description="BOHB's best configuration and its result, if BOHB ran.")
