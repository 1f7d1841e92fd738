"""A job's best genotype as files someone else can use (`adf-service best JOB --export DIR`).

``genotype.json`` (with its provenance), ``model.pt`` (the trained network's weights at its
best-validation epoch, the epoch whose test top-1 the tables report: :func:`adf_service.fusion.
load_fusion` rebuilds it, `adf-service evaluate --weights` tests it) and ``metrics.json`` (test and
val top-1, val loss, best epoch, parameters, FLOPs, the trial's whole config, the job and the
trial). The weights come from the trial's last Tune checkpoint in the job's storage.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from adf_service.fusion import fusion_weights
from adf_service.genotype import Genotype
from adf_service.train.checkpoint import CheckpointError, load_checkpoint
from trials.config import TrialConfig
from trials.extend import trial_dir
from trials.job_report import JobResults, read_job
from trials.results import best_evaluation
from trials.storage import JobStorage

__all__ = ["EXPORT_FILES", "ExportError", "best_export", "write_export"]

EXPORT_FILES = ("genotype.json", "model.pt", "metrics.json")
METRICS = ("test_top1", "val_top1", "val_loss", "best_epoch", "fusion_params", "total_params", "fusion_flops")
CHECKPOINT_FILE = "trial.ckpt"  # trials.trainable.CHECKPOINT_FILE, without importing Ray
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")


class ExportError(ValueError):
    """The job has no best genotype to export, or its weights cannot be found."""


def _last_checkpoint(storage: JobStorage, trial_key: str) -> bytes:
    fs = storage.filesystem
    where = trial_dir(storage, trial_key)  # in the job's experiment or an extension's (trials/extend.py)
    if where is None:
        raise ExportError(f"{storage.uri}: no trial directory {trial_key}/ (where its checkpoints are)")
    numbered = [(int(m.group(1)), info.path) for info in fs.get_file_info(pafs.FileSelector(where))
                if (m := _CHECKPOINT_DIR.search(info.base_name)) and info.type == pafs.FileType.Directory]
    if not numbered:
        raise ExportError(f"{storage.uri}/{trial_key}: no checkpoint_NNNNNN/ directory")
    with fs.open_input_stream(posixpath.join(max(numbered)[1], CHECKPOINT_FILE)) as stream:
        return stream.read()


def _trained(state: dict[str, Any], stage: str) -> dict[str, Any]:
    """The training's state in a trial checkpoint: a search trial's evaluation, else its training."""
    job = state["job"]
    trained = job.get("evaluation") if stage == "evaluation" else job.get("train")
    if not trained or trained.get("best_model") is None:
        raise ExportError("the trial's checkpoint holds no best-epoch weights (written by a version that "
                          "did not keep them: rerun the trial to export it)")
    return trained


def best_export(job: JobResults, by: str = "test") -> dict[str, bytes]:
    """The export of the job's best learned evaluation, ``by`` test (the highest test top-1: what
    `adf-service best` and ``/best`` show, Table 4's best run) or val (the lowest val loss): file name → bytes."""
    row = best_evaluation(job.rows, by=by)
    if row is None:
        raise ExportError(f"job {job.job}: no succeeded evaluation of a learned search to export")
    data = _last_checkpoint(job.storage, row["trial_key"])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / CHECKPOINT_FILE
        local.write_bytes(data)
        try:
            state = load_checkpoint(local, "trial")
        except CheckpointError as exc:
            raise ExportError(f"{job.storage.uri}/{row['trial_key']}: {exc}") from None
    trained = _trained(state, row["stage"])
    meta = trained["meta"]
    genotype = Genotype.from_json(row["genotype"], where=row["trial_key"])
    metrics = {name: row.get(name) for name in METRICS}
    source = {"job": job.job, "trial_key": row["trial_key"], "trial_id": row["trial_id"], "selected_by": by}
    weights = fusion_weights(genotype, meta["in_channels"], meta["n_classes"], meta["channels"],
                             trained["best_model"], modalities=meta.get("modalities"), **metrics, **source)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    config = TrialConfig.from_json(row["config"]).to_dict()
    return {
        "genotype.json": (genotype.to_json() + "\n").encode(),
        "model.pt": buffer.getvalue(),
        "metrics.json": (json.dumps({**source, **metrics, "modalities": meta.get("modalities"),
                                     "config": config}, indent=1) + "\n").encode(),
    }


def write_export(job_dir: str | Path | JobStorage, out_dir: Path, by: str = "test") -> list[Path]:
    """Write the export of a job's best genotype into ``out_dir``; the files written."""
    files = best_export(read_job(job_dir), by)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    return written
