"""Per-epoch results: every trial's epochs from Ray Tune's ``result.json`` files, as one table.

Each trial reports one result per epoch (trials/trainable.py), which Tune appends to
``<job>/<trial key>/result.json`` (``<job>/bohb/<trial>/result.json`` for BOHB's, ``<job>/extend-<n>/<trial
key>/result.json`` for an extension's: trials/extend.py). A trial
restored from a checkpoint reports the epochs after it again: the last report of an epoch wins.
A search trial's evaluation epochs are rows of stage ``evaluation``. The job writes the table to
``results/epochs.parquet`` at its end (docs/results.md, "Per-epoch results"); a running or older
job's epochs are read from the trial directories.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from trials.extend import experiment_dirs
from trials.storage import JobStorage

__all__ = ["EPOCHS_TABLE", "EPOCH_SCHEMA", "epoch_rows", "read_epochs", "write_epochs"]

EPOCHS_TABLE = "epochs"  # results/epochs.parquet

EPOCH_SCHEMA = pa.schema(
    [
        ("job", pa.string()),
        ("stage", pa.string()),  # baselines, search, evaluation, random, controls, bohb
        ("trial_key", pa.string()),
        ("trial_id", pa.string()),
        ("epoch", pa.int32()),  # 1-based
        ("epochs", pa.int32()),  # the run's total
        ("train_loss", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_top1", pa.float64()),
        ("test_top1", pa.float64()),  # null in search epochs
        ("lr", pa.float64()),
        ("epoch_seconds", pa.float64()),
        ("alpha_entropy", pa.float64()),  # search epochs only: mean entropy of softmax(α)
        ("beta_entropy", pa.float64()),  # search epochs only: of the edge weights β
        ("timestamp", pa.float64()),  # unix seconds (fractional) when the epoch ended
        ("node_id", pa.string()),  # the Ray node the epoch ran on
    ]
)


def _result_files(storage: JobStorage) -> list[str]:
    """``result.json`` of every trial directory of the job (BOHB's under ``bohb/``, extensions' under
    ``extend-<n>/``)."""
    fs = storage.filesystem
    found = []
    for parent in experiment_dirs(storage):
        for info in fs.get_file_info(pafs.FileSelector(parent, recursive=False)):
            candidate = posixpath.join(info.path, "result.json")
            if info.type == pafs.FileType.Directory and fs.get_file_info(candidate).type == pafs.FileType.File:
                found.append(candidate)
    return sorted(found)


def _epoch(job: str, result: dict[str, Any]) -> dict[str, Any] | None:
    if result.get("epoch") is None or result.get("trial_key") is None:
        return None  # not one of our epochs (e.g. a result Tune made up on a restore)
    stage = "evaluation" if result.get("phase") == "evaluation" else result.get("stage")
    row = {name: result.get(name) for name in EPOCH_SCHEMA.names}
    row.update(job=job, stage=stage)
    return row


def _parse(job: str, lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed driver: the epoch is reported again after restore
        row = _epoch(job, result)
        if row is not None:
            yield row


def epoch_rows(job: JobStorage) -> list[dict[str, Any]]:
    """Every trial-epoch of the job, from its trial directories, sorted by stage, trial and epoch."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in _result_files(job):
        with job.filesystem.open_input_stream(path) as stream:
            text = stream.read().decode(errors="replace")
        for row in _parse(job.job_id, text.splitlines()):
            latest[(row["stage"], row["trial_key"], row["epoch"])] = row  # a re-reported epoch: the last
    return [latest[key] for key in sorted(latest)]


def write_epochs(job: JobStorage) -> str:
    """Write ``results/epochs.parquet`` from the trial directories; its URI."""
    rows = epoch_rows(job)
    return job.write_parquet(EPOCHS_TABLE, pa.Table.from_pylist(rows, schema=EPOCH_SCHEMA))


def read_epochs(job: JobStorage) -> list[dict[str, Any]]:
    """The job's per-epoch rows: ``results/epochs.parquet`` when the job wrote it, else read now."""
    if job.exists("results", f"{EPOCHS_TABLE}.parquet"):
        return job.read_parquet(EPOCHS_TABLE).to_pylist()
    return epoch_rows(job)
