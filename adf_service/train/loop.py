"""Drive a resumable run epoch by epoch: checkpoint after every epoch, report, resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from adf_service.train.checkpoint import load_checkpoint, save_checkpoint
from adf_service.train.runtime import EpochRecord

__all__ = ["Resumable", "drive"]


class Resumable(Protocol):
    kind: str

    @property
    def done(self) -> bool: ...
    def step_epoch(self) -> EpochRecord: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def result(self): ...


def drive(
    run: Resumable,
    *,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    stop_after: int | None = None,
):
    """Run ``run`` to the end (or to epoch ``stop_after``) and return ``run.result()``.

    With ``checkpoint``, an existing file is resumed from and the file is rewritten after
    every epoch, so an interrupted run loses at most the epoch in progress.
    """
    if checkpoint is not None and Path(checkpoint).exists():
        run.load_state_dict(load_checkpoint(checkpoint, run.kind))
    while not run.done and (stop_after is None or len(run.history) < stop_after):
        record = run.step_epoch()
        if checkpoint is not None:
            save_checkpoint(checkpoint, run.kind, run.state_dict())
        if on_epoch is not None:
            on_epoch(record)
    return run.result()
