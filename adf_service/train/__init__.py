"""Training loops: PC-DARTS search, from-scratch evaluation, baselines (one epoch per call)."""

from adf_service.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from adf_service.train.fit import TrainConfig, TrainResult, TrainRun, baseline_run, evaluation_run
from adf_service.train.loop import drive
from adf_service.train.runtime import EpochRecord, Runtime, TrainingDiverged, seed_everything
from adf_service.train.search import SearchConfig, SearchResult, SearchRun

__all__ = [
    "CheckpointError",
    "EpochRecord",
    "Runtime",
    "SearchConfig",
    "SearchResult",
    "SearchRun",
    "TrainConfig",
    "TrainResult",
    "TrainRun",
    "TrainingDiverged",
    "baseline_run",
    "drive",
    "evaluation_run",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
]
