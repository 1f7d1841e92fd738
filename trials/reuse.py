"""Reusing earlier jobs' trials (``reuse_from``, issue 15 item 4): a trial whose spec and feature store
are the same as a succeeded trial of a named job is not run again; this job takes its rows (no Ray here).

Two trials are the same when their :func:`content_hash` is: a SHA-256 of the trial's config (its stage,
key, setting, seed, every hyper-parameter, the modalities; everything :class:`~trials.config.TrialConfig`
holds but the store's path) and of the feature store's manifest (:func:`store_digest`: what the store
holds and how it was made). A trial's seed derives from the grid's seed and its key, so the same repeat
of the same setting under the same grid seed is the same trial. BOHB trials are never reused: they
depend on this job's other results.

A reused trial keeps its source's values, with ``job`` this job's and ``reused_from`` naming the source
(``<source job directory>#<trial id>``); its usage columns are a trial's that never started (this job
spent nothing on it: :meth:`trials.usage.UsageLedger.fill`).
Its per-epoch results come along: the source's ``result.json`` is copied to ``<job>/reused/<trial key>/``
(:data:`REUSED_DIR`, one of :func:`trials.extend.experiment_dirs`). What was reused is written to
:data:`REUSE_FILE` before any trial runs, so that a resumed driver takes the same rows.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from adf_service.features.manifest import load_manifest
from trials.config import STAGES, TrialConfig
from trials.extend import REUSED_DIR, trial_dir
from trials.results import read_table
from trials.storage import JobStorage

__all__ = ["REUSE_FILE", "REUSED_DIR", "Reuse", "content_hash", "plan_reuse", "read_reuse", "reuse_problem",
           "store_digest", "write_reuse"]

REUSE_FILE = "reused.json"  # <job>/reused.json: {"rows": [...], "sources": [...]}
NOT_REUSED = ("bohb",)  # stages whose trials depend on this job's other results


@dataclass(frozen=True)
class Reuse:
    """The rows this job takes from earlier jobs, and the trials it still runs."""

    rows: list[dict[str, Any]]  # RESULT_SCHEMA rows, ``job`` this job's, ``reused_from`` set
    trials: list[TrialConfig]  # the trials no source had, in the grid's order
    sources: list[str]  # the source job directories, as the spec names them

    @property
    def reused_keys(self) -> set[str]:
        return {row["trial_key"] for row in self.rows}


@cache
def store_digest(store: str) -> str:
    """SHA-256 of the feature store's manifest, as its model writes it (key order and spacing aside)."""
    manifest = load_manifest(Path(store))
    return hashlib.sha256(manifest.model_dump_json().encode()).hexdigest()


def content_hash(trial: TrialConfig) -> str:
    """What makes two trials the same: the trial's config without the store's path, and its store's manifest."""
    config = {key: value for key, value in trial.to_dict().items() if key != "store"}
    text = json.dumps({"trial": config, "store": store_digest(trial.store)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _source_storage(job: str) -> JobStorage:
    return JobStorage.at(job if "://" in job else Path(job).expanduser().resolve())


def _source_rows(job: str) -> dict[str, list[dict[str, Any]]]:
    """A source job's succeeded trials' rows by content hash (a search trial: its search and evaluation rows)."""
    storage = _source_storage(job)
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for stage in STAGES:
        if stage in NOT_REUSED or not storage.exists("results", f"{stage}.parquet"):
            continue
        for row in read_table(storage, stage).to_pylist():
            by_trial.setdefault(row["trial_key"], []).append(row)
    found = {}
    for rows in by_trial.values():
        if all(row["status"] == "succeeded" for row in rows):
            trial = TrialConfig.from_json(rows[0]["config"], where=f"{job}: {rows[0]['trial_key']}'s config")
            try:
                found.setdefault(content_hash(trial), rows)
            except (OSError, ValueError):  # its store is gone or changed: nothing to compare with
                continue
    return found


def plan_reuse(storage: JobStorage, trials: Iterable[TrialConfig], sources: list[str]) -> Reuse:
    """Which of ``trials`` the ``sources`` (job directories, earliest first wins) have run: their rows as
    this job's, their result.json copied under ``<job>/reused/``; and the trials left to run."""
    trials = list(trials)
    available: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for job in sources:
        for digest, rows in _source_rows(job).items():
            available.setdefault(digest, (job, rows))
    taken: list[dict[str, Any]] = []
    left = []
    for trial in trials:
        hit = None if trial.stage in NOT_REUSED else available.get(content_hash(trial))
        if hit is None:
            left.append(trial)
            continue
        job, rows = hit
        taken += [_as_ours(storage.job_id, job, row) for row in rows]
        _copy_epochs(_source_storage(job), storage, trial.trial_key)
    return Reuse(taken, left, list(sources))


def _as_ours(job_id: str, source: str, row: dict[str, Any]) -> dict[str, Any]:
    """The source's row as this job's (its usage columns are filled as a trial's that never started)."""
    return {**row, "job": job_id, "reused_from": f"{source}#{row['trial_id']}"}


def _copy_epochs(source: JobStorage, storage: JobStorage, trial_key: str) -> None:
    """The source trial's result.json (its epochs) to ``<job>/reused/<trial key>/result.json``."""
    where = trial_dir(source, trial_key)
    if where is None:
        return
    target = posixpath.join(storage.path, REUSED_DIR, trial_key)
    storage.filesystem.create_dir(target, recursive=True)
    pafs.copy_files(posixpath.join(where, "result.json"), posixpath.join(target, "result.json"),
                    source_filesystem=source.filesystem, destination_filesystem=storage.filesystem)


def write_reuse(storage: JobStorage, reuse: Reuse) -> None:
    storage.write_text(REUSE_FILE, json.dumps({"sources": reuse.sources, "rows": reuse.rows}, indent=1))


def read_reuse(storage: JobStorage, trials: Iterable[TrialConfig]) -> Reuse:
    """What a job's first driver reused (:data:`REUSE_FILE`), for a resumed one; nothing when it reused nothing."""
    trials = list(trials)
    if not storage.exists(REUSE_FILE):
        return Reuse([], trials, [])
    data = json.loads(storage.read_text(REUSE_FILE))
    keys = {row["trial_key"] for row in data["rows"]}
    return Reuse(data["rows"], [t for t in trials if t.trial_key not in keys], data["sources"])


def reuse_problem(sources: list[str]) -> str | None:
    """Why a ``reuse_from`` entry names no job with result tables; None when each does. `validate` and
    `run` ask; parsing a grid reads no file."""
    for i, job in enumerate(sources):
        where = f"reuse_from[{i}]: {job!r}"
        storage = _source_storage(job)
        if not storage.exists():
            return f"{where}: no such job directory"
        if not any(storage.exists("results", f"{stage}.parquet") for stage in STAGES):
            return f"{where} has no result tables (results/*.parquet): name the directory of a finished job"
    return None
