"""The job driver: a grid spec → Ray Tune trials → Parquet result tables.

Baselines, searches (each followed at once by its evaluation, in the same trial), random
architectures, control genotypes and transferred genotypes (another job's, on this grid's store) run
as one Tune experiment, so every free slot takes the next trial whatever its stage, in the worker
that ran the last one (``reuse_actors``; trials/tuners.py's ``NewestPendingFirst`` keeps every node busy). Every trial
checkpoints each epoch; failed trials are retried from their last checkpoint (``FailureConfig``);
a job whose driver died resumes with ``Tuner.restore`` (``adf-service run --resume JOB``). A resume may
rerun the failed trials from scratch (``rerun_failed``); a finished job may be extended with more repeats
(``extend``: only the new trials run, in an experiment of their own, trials/extend.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune

from adf_service.features.store import FeatureStore
from trials.config import TrialConfig
from trials.epochs import write_epochs
from trials.expand import (
    baseline_trials,
    control_trials,
    random_trials,
    ray_trial_counts,
    search_trials,
    transfer_trials,
)
from trials.extend import Extension, merge_rows, plan_extension, refuse_plain_resume
from trials.job_report import write_report
from trials.pending import PendingWatch
from trials.progress import StageProgress
from trials.results import environment, error_text, trial_rows, write_tables
from trials.reuse import REUSE_FILE, plan_reuse, read_reuse, write_reuse
from trials.spec import GridSpec
from trials.storage import Fenced, JobStorage, check_lease, claim_lease, read_progress
from trials.summary import setting_summaries
from trials.tuners import TunerRun, main_tuner, run_bohb
from trials.usage import UsageLedger, read_usage

__all__ = [
    "ENDED_WITHOUT_RESULT", "SUMMARY_FILE", "Fenced", "JobOutcome", "ResourceError",
    "run_grid",
]

logger = logging.getLogger(__name__)

# A row's error when Tune gave neither the trial's final result nor an error; the fault schedule's
# check counts any such row as a defect (a stale STOP made them, trials/tune_state.py).
ENDED_WITHOUT_RESULT = "the trial ended without its final result and without an error"
SUMMARY_FILE = "results/summary.json"  # per setting: searched vs random vs controls, with statistics

# Checkpoints every epoch with num_to_keep=2 force experiment snapshots by design.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class ResourceError(RuntimeError):
    """A trial asks for more than any node of the cluster has."""


@dataclass
class JobOutcome:
    job_id: str
    job_uri: str  # <storage>/<job_id>: a local path or a URI
    job_dir: Path | None  # the same, when the storage is local
    tables: dict[str, str]  # stage → URI of its Parquet table
    counts: dict[str, dict[str, int]]  # stage → {"succeeded": n, "failed": n}
    summaries: list[dict[str, Any]]  # per setting: searched vs random vs controls (trials/summary.py)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _trial_resources(spec: GridSpec, say: Callable[[str], None] = _say) -> dict[str, float]:
    """The per-trial request, checked against the nodes now: fail at once rather than hang.

    With no GPU on any live node, trials run on CPUs only if the grid allows it
    (``resources.allow_cpu_fallback``); otherwise they ask for their GPUs and wait, which on an
    autoscaling cluster (KubeRay's GPU group at ``minReplicas: 0``) is what brings a GPU node up.
    """
    want = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if want["gpu"] and not any(n.get("GPU", 0) for n in nodes):
        if spec.resources.allow_cpu_fallback:
            say(f"No live node has a GPU: the trials run on CPUs (resources.allow_cpu_fallback), "
                f"{want['cpu']:g} CPU each")
            want["gpu"] = 0.0
        else:
            say(f"No live node has a GPU yet: the trials ask for {want['gpu']:g} GPU each and wait for one "
                "(an autoscaling cluster starts a GPU node for them); resources.allow_cpu_fallback: true "
                "runs them on CPUs instead")
            return want
    if not any(n.get("CPU", 0) >= want["cpu"] and n.get("GPU", 0) >= want["gpu"] for n in nodes):
        have = ", ".join(f"{n.get('CPU', 0):g} CPU / {n.get('GPU', 0):g} GPU" for n in nodes)
        raise ResourceError(
            f"resources: a trial asks for {want['cpu']:g} CPU and {want['gpu']:g} GPU, "
            f"but no node has that (nodes: {have})"
        )
    return want


def _backbone_params(store: str) -> int | None:
    provenance = FeatureStore.open(store).manifest.provenance
    value = provenance.get("backbone_params")
    return int(value) if isinstance(value, (int, float)) else None


def _collect(
    job_id: str, grid: tune.ResultGrid, trials: list[TrialConfig], backbone_params: int | None
) -> list[dict[str, Any]]:
    # A trial whose actor never started has no config in its result: find it by its
    # directory, which is named after its trial key.
    by_key = {t.trial_key: t for t in trials}
    rows = []
    for result in grid:
        trial = TrialConfig.of_tune(result.config) or by_key[Path(result.path).name]
        final = result.metrics if result.metrics and result.metrics.get("done") else None
        error = None if final else error_text(result.error) if result.error else _ended_without_result(result)
        trial_id = (result.metrics or {}).get("trial_id") or trial.trial_key
        rows.extend(trial_rows(job_id, trial_id, trial, final, error, backbone_params).values())
    return rows


def _ended_without_result(result: tune.Result) -> str:
    """What a trial Tune ended with neither its final result nor an error reached: where it stopped, in
    its row's error and in the driver's log. The fault schedule's case of it, a dead driver's STOP
    applied to the trial the next attempt resumed, is mended in trials/tune_state.py
    (docs/reliability.md, "The case of run C")."""
    last = result.metrics or {}
    where = (f"its last result was {last['phase']} epoch {last['epoch']}/{last['epochs']}" if "epoch" in last
             else "it reported no epoch")
    logger.warning("%s: Tune ended the trial without its final result or an error; %s (training_iteration %s)",
                   result.path, where, last.get("training_iteration"))
    return f"{ENDED_WITHOUT_RESULT}: {where}; `adf-service rerun --failed` runs it again"


def run_grid(
    spec: GridSpec,
    *,
    job_id: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
    callbacks: list[tune.Callback] | None = None,
    attempt: int | None = None,
    rerun_failed: bool = False,
    extend: bool = False,
) -> JobOutcome:
    """Run (or resume) every trial of ``spec`` on the connected Ray cluster; write the tables.

    Call ``ray.init`` first (any address); results go to ``<spec.storage>/<job_id>/``.
    ``attempt`` (the service's count of this job's drivers) claims the job's lease: when a
    newer attempt claims it, this run stops writing and raises Fenced.

    ``rerun_failed`` (with ``resume``): every trial that failed (Tune's ERROR, a ``failed`` row) runs
    again from scratch (``Tuner.restore(restart_errored=True)``), in the main experiment and BOHB's; a
    trial that never finished goes on from its checkpoint, a finished one keeps its row. A rerun trial
    is the same trial: its key, and so its seed (:func:`trials.expand.trial_seed`), stay.

    ``extend``: ``spec`` is the finished job's grid with larger repeats (trials/extend.py; any other
    difference from its spec.json, or a job without tables, raises ExtendError, a ValueError). Only the
    trials the job's tables lack run, in ``<job>/extend-<attempt or n>/``; the job's rows stay as they
    are, the new ones join them, and spec.json takes the new grid. BOHB is not rerun. Both rewrite the
    tables, summaries, epochs.parquet and the report (docs/results.md, "Rerun failed trials, extend").
    """
    if rerun_failed and not resume:
        raise ValueError("rerun_failed: only with resume (it reruns the failed trials of a stored job)")
    spec = _absolute_paths(spec)
    job_id = job_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = JobStorage.of(spec.storage, job_id)
    transfer = transfer_trials(spec)  # reads its source job: a missing genotype or modality fails here
    trials = [*baseline_trials(spec), *search_trials(spec), *random_trials(spec), *control_trials(spec), *transfer]
    resources = _trial_resources(spec)
    extension = (plan_extension(storage, spec, trials, attempt=attempt, can_restore=tune.Tuner.can_restore)
                 if extend else None)
    fresh = not resume and extension is None  # a new job; else one in the storage already
    if resume and extension is None:
        if not tune.Tuner.can_restore(storage.uri):
            raise FileNotFoundError(f"{storage.uri}: no job to resume there")
        refuse_plain_resume(storage, spec)
    if fresh:
        storage.create(exist_ok=attempt is not None and attempt > 1)
    if attempt is not None:
        claim_lease(storage, attempt)
    if fresh:
        storage.write_text("spec.json", spec.model_dump_json(indent=1))
        storage.write_text("environment.json", json.dumps(environment(), indent=1))
    # Trials earlier jobs ran (reuse_from): planned once, before any runs; a resumed driver reads the plan
    reuse = None
    if extension is None:
        reuse = plan_reuse(storage, trials, spec.reuse_from) if fresh else read_reuse(storage, trials)
        if fresh and reuse.rows:
            write_reuse(storage, reuse)
    # The "search" bar counts a search and its evaluation; transfer's count is known once its source is read.
    totals = {**ray_trial_counts(spec), "transfer": len(transfer)}
    if extension is not None:  # the bars count the extension's trials
        totals = dict(Counter(t.stage for t in extension.trials))
    if reuse is not None:  # and not the reused ones
        totals = {stage: n - sum(t.stage == stage for t in trials if t.trial_key in reuse.reused_keys)
                  for stage, n in totals.items()}
    usage = UsageLedger(storage, attempt=attempt)  # every trial attempt's GPU- and CPU-seconds: usage.json
    watch = PendingWatch(storage, spec.resources)  # waiting trials: pending.json, then wait or fail
    progress = StageProgress(totals, storage=storage, enabled=show_progress, attempt=attempt, usage=usage)
    if resume and extension is None:
        progress.resume_from(read_progress(storage))
    if resume or extension is not None:  # the job's attempts so far stay in its usage.json
        usage.resume_from(read_usage(storage))
    run = TunerRun(spec, storage, resources, resume, spec.resources.max_failures, rerun_failed)

    grid_callbacks = [progress, usage, watch, *(callbacks or [])]

    try:
        with progress:
            backbone = _backbone_params(spec.dataset.store)
            if extension is not None:
                ran = _run_extension(run, extension, trials, backbone, grid_callbacks)
                usage.fill(ran)  # the job's rows keep theirs, as the tables hold them
                rows = merge_rows(extension.rows, ran)
            else:
                rows = list(reuse.rows)
                if reuse.rows:
                    _say(f"{len(reuse.reused_keys)} of {len(trials)} trials taken from earlier jobs ({REUSE_FILE})")
                if reuse.trials:
                    grid = main_tuner(run, reuse.trials, grid_callbacks).fit()
                    rows += _collect(job_id, grid, reuse.trials, backbone)
                if spec.bohb.enabled:
                    progress.for_tuner("bohb")
                    rows += run_bohb(run, rows, backbone, [progress, usage, watch])
                usage.fill(rows)
                ran = rows
            check_lease(storage, attempt)
            if extension is not None:  # the job's grid is the extended one from now on
                storage.write_text("spec.json", spec.model_dump_json(indent=1))
            tables = write_tables(storage, rows)
            summaries = setting_summaries(rows, seed=spec.seed)
            storage.write_text(SUMMARY_FILE, json.dumps(summaries, indent=1))
            write_epochs(storage)  # results/epochs.parquet: every trial-epoch, for exports and curves
            _write_job_report(storage)
            progress.settle(ran)  # an extension's counts are its own trials
    except Exception as exc:
        if progress.fenced or usage.fenced or isinstance(exc, Fenced):  # Tune wraps what a callback raised
            check_lease(storage, attempt)
        raise
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        bucket = counts.setdefault(row["stage"], {"succeeded": 0, "failed": 0})
        bucket[row["status"]] += 1
    return JobOutcome(job_id, storage.uri, storage.local_dir, tables, counts, summaries)


def _run_extension(run: TunerRun, extension: Extension, trials: list[TrialConfig], backbone: int | None,
                   callbacks: list[tune.Callback]) -> list[dict[str, Any]]:
    """The rows of an extension's trials, run in the extension's own experiment (or its restored one)."""
    run = replace(run, resume=extension.restore, experiment=extension.experiment)
    grid = main_tuner(run, extension.trials, callbacks).fit()
    return _collect(run.storage.job_id, grid, trials, backbone)


def _absolute_paths(spec: GridSpec) -> GridSpec:
    """Trials run in their own working directories: the store (and a transfer's source job and BOHB's
    warm-start jobs, when local) as absolute paths, which spec.json then records."""
    dataset = spec.dataset.model_copy(update={"store": str(Path(spec.dataset.store).resolve())})
    source = spec.transfer.from_job
    if source is not None and "://" not in source:
        spec = spec.model_copy(update={"transfer": spec.transfer.model_copy(
            update={"from_job": str(Path(source).expanduser().resolve())})})
    warm = [job if "://" in job else str(Path(job).expanduser().resolve()) for job in spec.bohb.warm_start]
    bohb = spec.bohb.model_copy(update={"warm_start": warm})
    reuse = [job if "://" in job else str(Path(job).expanduser().resolve()) for job in spec.reuse_from]
    return spec.model_copy(update={"dataset": dataset, "bohb": bohb, "reuse_from": reuse})


def _write_job_report(storage: JobStorage) -> None:
    """The job's report into <job>/report/ (report.html is what GET /v1/jobs/{id}/report serves). A
    report that cannot be made is logged, and the job keeps its results: `adf-service report` retries."""
    try:
        write_report(storage)
    except Exception:  # noqa: BLE001 - a figure's failure must not fail a finished grid
        logger.exception("%s: the job's report could not be written; its result tables are kept", storage.uri)


