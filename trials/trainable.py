"""The Ray Tune trainable: a thin adapter from a trial config to a library job.

setup builds the job from the :class:`~trials.config.TrialConfig` in ``config["trial"]``;
each ``step`` runs one epoch and returns its metrics; checkpoints are the library's own
state dicts, written every epoch; when the job is done the final result carries its
result rows (JSON) and ``done=True``. With ``reuse_actors`` Tune hands a finished trial's
actor the next trial through ``reset_config``, which sets that trial up as a fresh actor would.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import posixpath
import re
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune
from ray.train._internal.checkpoint_manager import _TrainingResult
from ray.train._internal.storage import _exists_at_fs_path

from adf_service.train import Runtime, load_checkpoint, save_checkpoint
from adf_service.train.runtime import keep_freed_memory_in_heap
from trials.config import TUNE_KEY, TrialConfig
from trials.jobs import make_trial_job

__all__ = ["StageTrainable", "newest_checkpoint"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "trial.ckpt"


class StageTrainable(tune.Trainable):
    """One trial of any stage: baselines, search (+ its evaluation), random, controls."""

    def setup(self, config: dict[str, Any]) -> None:
        self.start(TrialConfig.from_dict(config[TUNE_KEY], "a Tune trial's config"))

    def start(self, trial: TrialConfig) -> None:
        """Build the trial's job (setup's work, for a subclass whose config is not a TrialConfig)."""
        keep_freed_memory_in_heap()
        self._release_job()
        self.trial = trial
        self.runtime = Runtime(deterministic=bool(trial.deterministic))
        self.runtime.apply_determinism()  # process-wide flags: set or reset for this trial, whatever ran before
        self.job = self.make_job(trial, self.runtime)
        self.wall_started = time.time()
        self.wall_seconds = 0.0

    def _release_job(self) -> None:
        """A reused actor lets the last trial's model and data go before the next is built; on a GPU it
        also frees their device memory, held in cycles or in CUDA's cache (a full collection takes
        0.16 s once torch is imported: on a CPU the garbage collector's own pace is enough)."""
        self.job = None
        if torch.cuda.is_initialized():
            gc.collect()
            torch.cuda.empty_cache()

    def make_job(self, trial: TrialConfig, runtime: Runtime) -> Any:
        """The library job the trial runs, one epoch per step (bench/orchestration.py's stand-in sleeps)."""
        return make_trial_job(trial, runtime)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Take the next trial in this actor (``reuse_actors``): everything is rebuilt from its config, the
        seeds are set again by its job, and Tune itself resets the iteration, its clocks and the trial's
        directory. ``self.setup`` is the subclass's (and tune.with_parameters' wrapper's) own."""
        self.setup(new_config)
        return True

    def step(self) -> dict[str, Any]:
        started = time.perf_counter()
        metrics = self.job.step()
        self.wall_seconds += time.perf_counter() - started
        metrics.update(
            stage=self.trial.stage,
            trial_key=self.trial.trial_key,
            pid=os.getpid(),
            node_id=ray.get_runtime_context().get_node_id(),
        )
        if self.job.done:
            metrics["rows"] = json.dumps(self.job.rows())
            metrics["wall_seconds"] = self.wall_seconds
            gpus = ",".join(str(i) for i in ray.get_gpu_ids())  # which GPU(s) Ray gave the trial (a fraction: one)
            metrics["device"] = f"{platform.node()} {self.runtime.describe()}" + (f" (Ray GPU {gpus})" if gpus else "")
            metrics["done"] = True
        return metrics

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        save_checkpoint(
            Path(checkpoint_dir) / CHECKPOINT_FILE,
            "trial",
            {"job": self.job.state_dict(), "wall_seconds": self.wall_seconds, "trial_key": self.trial.trial_key},
        )

    def restore(self, checkpoint_path: Any) -> None:
        """Tune's restore, from the newest checkpoint left in the trial's directory when the one Tune
        names is gone. A driver snapshots its experiment every few seconds while its trials write a
        checkpoint every epoch and keep the last two, so the snapshot a dead driver left can name one
        already deleted; Tune would then fail the trial at every retry ("does not exist on storage
        anymore"; the fault schedule, docs/reliability.md, met it). The newer one holds more work."""
        if isinstance(checkpoint_path, _TrainingResult) and not _exists_at_fs_path(
                checkpoint_path.checkpoint.filesystem, checkpoint_path.checkpoint.path):
            gone = checkpoint_path.checkpoint
            newest = newest_checkpoint(gone.filesystem, posixpath.dirname(gone.path))
            if newest is not None:
                logger.warning("%s: gone; restoring from %s, the newest checkpoint left", gone.path, newest)
                checkpoint_path = _TrainingResult(checkpoint=tune.Checkpoint(newest, filesystem=gone.filesystem),
                                                  metrics=checkpoint_path.metrics)
        super().restore(checkpoint_path)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = load_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE, "trial")
        self.job.load_state_dict(state["job"])
        self.wall_seconds = state["wall_seconds"]


def newest_checkpoint(fs: pafs.FileSystem, trial_dir: str) -> str | None:
    """The newest ``checkpoint_<n>/`` under ``trial_dir`` that holds a trial checkpoint file; None if none."""
    found = []
    for info in fs.get_file_info(pafs.FileSelector(trial_dir, allow_not_found=True)):
        match = re.fullmatch(r"checkpoint_(\d+)", info.base_name)
        if match and info.type == pafs.FileType.Directory:
            found.append((int(match.group(1)), info.path))
    for _, path in sorted(found, reverse=True):
        if fs.get_file_info(posixpath.join(path, CHECKPOINT_FILE)).type == pafs.FileType.File:
            return path
    return None

