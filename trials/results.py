"""Result tables: one Parquet file per stage under ``<storage>/<job>/results/``.

Columns are documented in docs/results.md. A failed trial still gets its row, with
``status = "failed"`` and the error; numbers are null there.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from adf_service.provenance import code_version
from trials.config import BOHB_HYPERPARAMETERS, STAGES, TrialConfig
from trials.storage import JobStorage

__all__ = [
    "RESULT_SCHEMA",
    "ResultTableError",
    "STAGES",
    "TRIAL_STATUSES",
    "best_evaluation",
    "best_of_job",
    "error_text",
    "bohb_best",
    "environment",
    "read_table",
    "trial_rows",
    "write_tables",
]

TRIAL_STATUSES = ("succeeded", "failed")  # a row's status: a failed trial still gets its row

RESULT_SCHEMA = pa.schema(
    [
        ("job", pa.string()),
        ("stage", pa.string()),
        ("trial_id", pa.string()),
        ("trial_key", pa.string()),
        ("operators", pa.string()),
        ("discretization", pa.string()),
        ("n_inputs", pa.int32()),
        ("n_cells", pa.int32()),
        ("modalities", pa.string()),
        ("repeat", pa.int32()),
        ("seed", pa.int64()),
        ("best_epoch", pa.int32()),
        ("val_loss", pa.float64()),
        ("val_top1", pa.float64()),
        ("test_top1", pa.float64()),
        ("fusion_params", pa.int64()),
        ("total_params", pa.int64()),
        ("fusion_flops", pa.int64()),
        ("learned", pa.bool_()),
        ("skip_edges", pa.int32()),
        ("genotype", pa.string()),
        ("config", pa.string()),
        ("wall_seconds", pa.float64()),
        ("device", pa.string()),
        ("node_id", pa.string()),
        # What the trial held and how long, over all its attempts (trials/usage.py); lost: work redone
        ("gpus", pa.float64()),
        ("cpus", pa.float64()),
        ("gpu_seconds", pa.float64()),
        ("cpu_seconds", pa.float64()),
        ("lost_gpu_seconds", pa.float64()),
        ("lost_cpu_seconds", pa.float64()),
        ("attempts", pa.int32()),
        ("status", pa.string()),
        ("error", pa.string()),
        # "<source job directory>#<trial id>": taken from an earlier job, not run (trials/reuse.py)
        ("reused_from", pa.string()),
    ]
)


def trial_rows(
    job: str,
    trial_id: str,
    trial: TrialConfig,
    final: dict[str, Any] | None,
    error: str | None,
    backbone_params: int | None,
) -> dict[str, dict[str, Any]]:
    """Rows (by table) for one finished or failed trial; ``config`` is the trial's own."""
    from adf_service.genotype import Genotype  # imports torch: not for the CLI's and the client's STAGES

    setting = trial.setting.to_dict() if trial.setting else {}
    base = {
        "job": job,
        "trial_id": trial_id,
        "trial_key": trial.trial_key,
        "operators": setting.get("operators"),
        "discretization": setting.get("discretization"),
        "n_inputs": setting.get("n_inputs"),
        "n_cells": setting.get("n_cells"),
        "modalities": "+".join(trial.modalities or []) or None,
        "repeat": trial.repeat,
        "seed": trial.seed,
        "device": (final or {}).get("device"),
        "node_id": (final or {}).get("node_id"),  # the Ray node of the trial's last epoch
        "config": trial.to_json(),
    }
    stage = trial.stage
    tables = ["search", "evaluation"] if stage == "search" else [stage]
    produced = json.loads(final["rows"]) if final and "rows" in final and not error else {}
    rows = {}
    for table in tables:
        row = dict(base, stage=table, status="succeeded", error=None)
        if table in produced:
            row.update(produced[table])
            if row.get("genotype"):
                row["skip_edges"] = Genotype.from_json(row["genotype"], where=trial.trial_key).count("skip")
            row.setdefault("wall_seconds", (final or {}).get("wall_seconds"))
            if row.get("fusion_params") is not None and backbone_params is not None:
                row["total_params"] = row["fusion_params"] + backbone_params
        else:
            row.update(status="failed", error=error or "the trial ended without a result")
        rows[table] = row
    return rows


def error_text(error: BaseException) -> str:
    """A failed trial's error for its row: its repr, or where that is empty (Ray's ``ActorDiedError()``)
    its type and message on one line, cut to 500 characters."""
    text = repr(error)
    if text.endswith("()") and str(error).strip():
        text = f"{type(error).__name__}: {' '.join(str(error).split())[:500]}"
    return text


def best_evaluation(rows: Iterable[dict[str, Any]], by: str = "test") -> dict[str, Any] | None:
    """The succeeded evaluation of a learned search that is best ``by``: ``test``, the best test
    top-1, ties to the lower val loss (Table 4's "best run"); ``val``, the lowest val loss, ties to
    the better test top-1 (a choice that does not look at the test set). None when there is none.

    A search whose supernet did not learn (``learned`` false) is no searched result.
    """
    if by not in ("test", "val"):
        raise ValueError(f"best_evaluation by {by!r}: expected 'test' or 'val'")
    evaluated = [r for r in rows if r["stage"] == "evaluation" and r["status"] == "succeeded"
                 and r.get("learned") is not False]
    if by == "val":
        return min(evaluated, key=lambda r: (r["val_loss"], -r["test_top1"]), default=None)
    return max(evaluated, key=lambda r: (r["test_top1"], -r["val_loss"]), default=None)


def bohb_best(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """BOHB's best configuration: the succeeded BOHB trial with the lowest val loss (BOHB's own
    objective), its sampled hyper-parameters and epochs, and its result; None when none succeeded."""
    bohb = [r for r in rows if r["stage"] == "bohb" and r["status"] == "succeeded"]
    if not bohb:
        return None
    top = min(bohb, key=lambda r: r["val_loss"])
    evaluation = (TrialConfig.from_json(top["config"]).evaluation if top["config"] else None) or {}
    keys = (*BOHB_HYPERPARAMETERS, "epochs")
    return {"config": {k: evaluation.get(k) for k in keys}, "trial_id": top["trial_id"],
            "val_loss": top["val_loss"], "test_top1": top["test_top1"]}


def best_of_job(job: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a job's ``best`` answers (REST ``/best``, ``adf-service best``): the best evaluation's row
    (``trial``), its genotype as a dict and BOHB's best; None when no evaluation succeeded."""
    top = best_evaluation(rows)
    if top is None:
        return None
    return {"job": job, "trial": top, "genotype": json.loads(top["genotype"]), "bohb": bohb_best(rows)}


def _job_storage(job: JobStorage | str | Path) -> JobStorage:
    return job if isinstance(job, JobStorage) else JobStorage.at(job)


def write_tables(job: JobStorage | str | Path, rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Write one Parquet file per stage (every stage gets a file, possibly empty); their URIs.

    ``job`` is the job's storage, or its local directory.
    """
    storage = _job_storage(job)
    by_stage: dict[str, list[dict[str, Any]]] = {s: [] for s in STAGES}
    for row in rows:
        by_stage[row["stage"]].append(row)
    uris = {}
    for stage, stage_rows in by_stage.items():
        stage_rows.sort(key=lambda r: r["trial_key"])
        table = pa.Table.from_pylist(
            [{name: r.get(name) for name in RESULT_SCHEMA.names} for r in stage_rows], schema=RESULT_SCHEMA
        )
        uris[stage] = storage.write_parquet(stage, table)
    return uris


class ResultTableError(ValueError):
    """A result table that is there but cannot be read (truncated, corrupt): which file, and why."""


def read_table(job: JobStorage | str | Path, stage: str) -> pa.Table:
    """One stage's result table of a job (its storage, or its local directory); a file that is there
    but cannot be read raises :class:`ResultTableError` naming it (the file is left as it is)."""
    storage = _job_storage(job)
    try:
        return storage.read_parquet(stage)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:  # no Parquet magic bytes, a footer cut short, bad thrift
        uri = storage.child_uri("results", f"{stage}.parquet")
        raise ResultTableError(f"{uri}: the result table cannot be read ({exc})") from None


def environment() -> dict[str, Any]:
    packages = {}
    for name in ("torch", "numpy", "pyarrow", "ray", "pydantic", "hpbandster", "ConfigSpace"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "code_version": code_version(),
        "packages": packages,
    }
