"""Live progress of a job: trials done / running / pending per stage, best so far, ETA."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ray import tune
from rich.progress import Progress

from adf_service.console import progress_bar

__all__ = ["StageProgress"]


class StageProgress(tune.Callback):
    """A rich progress bar per stage, fed by Tune's trial events (on the driver)."""

    def __init__(self, trials: list[dict[str, Any]], enabled: bool = True):
        self.totals = Counter(t["stage"] for t in trials)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self.running: dict[str, str] = {}  # trial id → stage
        self.finished: Counter = Counter()
        self.failed: Counter = Counter()
        self.best: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state: leave the live display out.
        state = dict(self.__dict__)
        state["_progress"], state["_tasks"] = None, {}
        return state

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress = progress_bar()
            self._progress.__enter__()
            for stage, total in self.totals.items():
                self._tasks[stage] = self._progress.add_task(stage, total=total, status="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _refresh(self, stage: str) -> None:
        if self._progress is None or stage not in self._tasks:
            return
        running = sum(1 for s in self.running.values() if s == stage)
        done = self.finished[stage] + self.failed[stage]
        pending = self.totals[stage] - done - running
        status = f"running {running}  pending {pending}"
        if self.failed[stage]:
            status += f"  failed {self.failed[stage]}"
        if stage in self.best:
            status += f"  best test {self.best[stage]:.1f}%"
        self._progress.update(self._tasks[stage], completed=done, status=status)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        stage = trial.config["trial"]["stage"]
        self.running[trial.trial_id] = stage
        self._refresh(stage)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        stage = trial.config["trial"]["stage"]
        if result.get("done") and result.get("test_top1") is not None:
            self.best[stage] = max(self.best.get(stage, 0.0), float(result["test_top1"]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        stage = self.running.pop(trial.trial_id, trial.config["trial"]["stage"])
        self.finished[stage] += 1
        self._refresh(stage)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        stage = self.running.pop(trial.trial_id, trial.config["trial"]["stage"])
        self.failed[stage] += 1
        self._refresh(stage)
