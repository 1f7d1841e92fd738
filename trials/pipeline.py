"""The job driver: a grid spec → Ray Tune trials → Parquet result tables.

Baselines, searches (each followed at once by its evaluation, in the same trial) and
random architectures run as one Tune experiment, so every free slot takes the next
trial whatever its stage. Every trial checkpoints each epoch; failed trials are retried
from their last checkpoint (``FailureConfig``); a job whose driver died resumes with
``Tuner.restore`` (``adf-service run --resume JOB``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig

from adf_service.features.store import FeatureStore
from trials.bohb import bohb_trial, bohb_tuner_parts, with_base
from trials.expand import baseline_trials, random_trials, ray_trial_counts, search_trials, stage_counts
from trials.progress import StageProgress
from trials.results import best_evaluation, environment, trial_rows, write_tables
from trials.spec import GridSpec
from trials.storage import JobStorage
from trials.trainable import StageTrainable

__all__ = ["JobOutcome", "ResourceError", "run_grid"]

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


def _trial_resources(spec: GridSpec) -> dict[str, float]:
    """The per-trial request, checked against the nodes now: fail at once, never hang."""
    want = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if want["gpu"] and not any(n.get("GPU", 0) for n in nodes):
        want["gpu"] = 0.0  # no GPU anywhere: run the trials on CPUs
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
    job_id: str, grid: tune.ResultGrid, trials: list[dict[str, Any]], backbone_params: int | None
) -> list[dict[str, Any]]:
    # A trial whose actor never started has no config in its result: find it by its
    # directory, which is named after its trial key.
    by_key = {t["trial_key"]: t for t in trials}
    rows = []
    for result in grid:
        trial = (result.config or {}).get("trial") or by_key[Path(result.path).name]
        final = result.metrics if result.metrics and result.metrics.get("done") else None
        error = None if final else repr(result.error) if result.error else None
        trial_id = (result.metrics or {}).get("trial_id") or trial["trial_key"]
        stage_rows = trial_rows(job_id, trial_id, trial, final, error, backbone_params)
        for row in stage_rows.values():
            row["config"] = json.dumps(trial, sort_keys=True)
        rows.extend(stage_rows.values())
    return rows


def run_grid(
    spec: GridSpec,
    *,
    job_id: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
    max_failures: int = 2,
    callbacks: list[tune.Callback] | None = None,
) -> JobOutcome:
    """Run (or resume) every trial of ``spec`` on the connected Ray cluster; write the tables.

    Call ``ray.init`` first (any address); results go to ``<spec.storage>/<job_id>/``.
    """
    # Trials run in their own working directories: give them an absolute store path.
    dataset = spec.dataset.model_copy(update={"store": str(Path(spec.dataset.store).resolve())})
    spec = spec.model_copy(update={"dataset": dataset})
    job_id = job_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = JobStorage.of(spec.storage, job_id)
    trials = [*baseline_trials(spec), *search_trials(spec), *random_trials(spec)]
    resources = _trial_resources(spec)
    if resume:
        if not tune.Tuner.can_restore(storage.uri):
            raise FileNotFoundError(f"{storage.uri}: no job to resume there")
    else:
        storage.create()
        storage.write_text("spec.json", spec.model_dump_json(indent=1))
        storage.write_text("environment.json", json.dumps(environment(), indent=1))
    totals = ray_trial_counts(spec)  # the "search" bar counts a search and its evaluation
    progress = StageProgress(totals, storage=storage, enabled=show_progress)

    with progress:
        callbacks = [progress, *(callbacks or [])]
        tuner = _main_tuner(spec, storage, trials, resources, callbacks, resume, max_failures)
        grid = tuner.fit()
        backbone = _backbone_params(spec.dataset.store)
        rows = _collect(job_id, grid, trials, backbone)
        if spec.bohb.enabled:
            progress.for_tuner("bohb")
            rows += _run_bohb(spec, storage, job_id, rows, resources, resume, max_failures, backbone, progress)
        tables = write_tables(storage, rows)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        bucket = counts.setdefault(row["stage"], {"succeeded": 0, "failed": 0})
        bucket[row["status"]] += 1
    return JobOutcome(job_id, storage.uri, storage.local_dir, tables, counts)


def _main_tuner(spec, storage, trials, resources, callbacks, resume, max_failures) -> tune.Tuner:
    trainable = tune.with_resources(StageTrainable, resources)
    if resume:
        return tune.Tuner.restore(storage.uri, trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials,
            trial_name_creator=lambda t: t.config["trial"]["trial_key"],
            trial_dirname_creator=lambda t: t.config["trial"]["trial_key"],
        ),
        run_config=_run_config(storage.job_id, storage.root_uri, callbacks, max_failures),
    )


def _run_config(name: str, storage: str, callbacks: list, max_failures: int) -> RunConfig:
    return RunConfig(
        name=name,
        storage_path=storage,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
        callbacks=callbacks,
        verbose=0,
    )


def _run_bohb(spec, storage, job_id, rows, resources, resume, max_failures, backbone, progress) -> list[dict[str, Any]]:
    """BOHB on the evaluated genotype with the best test top-1 (Table 4's "best run")."""
    best = best_evaluation(rows)
    if best is None:
        return []
    base = bohb_trial(spec, json.loads(best["config"]), best["genotype"])
    trainable = tune.with_resources(with_base(base), resources)
    bohb_uri = f"{storage.uri}/bohb"
    if resume and tune.Tuner.can_restore(bohb_uri):
        tuner = tune.Tuner.restore(bohb_uri, trainable, resume_errored=True)
    else:
        search, scheduler = bohb_tuner_parts(spec, base["seed"])
        tuner = tune.Tuner(
            trainable,
            tune_config=TuneConfig(
                search_alg=search,
                scheduler=scheduler,
                num_samples=stage_counts(spec)["bohb"],
                max_concurrent_trials=spec.max_concurrent_trials,
            ),
            run_config=_run_config("bohb", storage.uri, [progress], max_failures),
        )
    out = []
    for result in tuner.fit():
        metrics = result.metrics or {}
        trial = dict(base, trial_key=f"bohb-{metrics.get('trial_id', '?')}")
        final = dict(metrics, done=True) if "rows" in metrics else None
        error = repr(result.error) if result.error else None
        row = trial_rows(job_id, metrics.get("trial_id", "?"), trial, final, error, backbone)["bohb"]
        trial["evaluation"] = dict(base["evaluation"], **json.loads(metrics.get("sampled", "{}")))
        row["config"] = json.dumps(trial, sort_keys=True)
        out.append(row)
    return out
