"""Live progress of a job: trials done / running / pending per stage, best so far, ETA.

Counts are recomputed from Tune's own trial list on every step, so a resumed job counts
the trials it finished before its driver died. Besides the bars on the terminal, the same
counts go to ``<job>/progress.json`` (rewritten atomically at most once a second and at
every change), which the service reads to answer "how far is my job".
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from ray import tune
from rich.progress import Progress

from adf_service.console import progress_bar
from trials.storage import JobStorage

__all__ = ["PROGRESS_FILE", "StageProgress", "read_progress"]

PROGRESS_FILE = "progress.json"

_STATUS = {"TERMINATED": "succeeded", "ERROR": "failed", "RUNNING": "running", "PAUSED": "running"}


def trial_stage(trial) -> str:
    """A grid trial carries its stage in its config; a BOHB trial's config is BOHB's sample."""
    return (trial.config.get("trial") or {}).get("stage", "bohb")


def read_progress(storage: JobStorage) -> dict[str, Any] | None:
    """The last progress snapshot of a job, or None before its driver wrote one."""
    try:
        return json.loads(storage.read_text(PROGRESS_FILE))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class StageProgress(tune.Callback):
    """A rich progress bar per stage and one for all trials, fed by Tune (on the driver).

    Args:
        totals: trials expected per stage (BOHB's are created as it samples them).
        storage: the job's storage, where ``progress.json`` goes; None writes nothing.
        enabled: show bars on the terminal.
    """

    def __init__(self, totals: dict[str, int], storage: JobStorage | None = None, enabled: bool = True):
        self.totals = {stage: n for stage, n in totals.items() if n}
        self.storage = storage
        self.enabled = enabled
        self.counts: dict[str, Counter] = {stage: Counter() for stage in self.totals}
        self.best: dict[str, float] = {}
        self.started = time.time()
        self._seen: dict[str, Counter] = {}  # per Tuner: stage → status counts of its trials
        self._tuner = "main"
        self._written = 0.0
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state: leave the live display out.
        state = dict(self.__dict__)
        state["_progress"], state["_tasks"] = None, {}
        return state

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress = progress_bar()
            self._progress.__enter__()
            self._tasks["all"] = self._progress.add_task("all trials", total=sum(self.totals.values()), status="")
            for stage, total in self.totals.items():
                self._tasks[stage] = self._progress.add_task(stage, total=total, status="")
        self._write(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self._write(force=True, finished=exc[0] is None)
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def for_tuner(self, name: str) -> StageProgress:
        """Count the trials of another Tuner (BOHB's) on top of those already counted."""
        self._tuner = name
        return self

    def snapshot(self) -> dict[str, Any]:
        stages = {}
        for stage, total in self.totals.items():
            c = self.counts[stage]
            done = c["succeeded"] + c["failed"]
            stages[stage] = {
                "total": total,
                "succeeded": c["succeeded"],
                "failed": c["failed"],
                "running": c["running"],
                "pending": max(total - done - c["running"], 0),
                "best_test_top1": self.best.get(stage),
            }
        return {"stages": stages, "started_at": self.started, "updated_at": time.time()}

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        seen: dict[str, Counter] = {}
        for trial in trials:
            status = _STATUS.get(trial.status)
            if status:
                seen.setdefault(trial_stage(trial), Counter())[status] += 1
        key = self._tuner
        if seen == self._seen.get(key):
            self._write()
            return
        self._seen[key] = seen
        for stage in self.counts:
            self.counts[stage] = sum((s.get(stage, Counter()) for s in self._seen.values()), Counter())
        self._refresh()
        self._write(force=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        self.on_step_end(0, trials)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        stage = trial_stage(trial)
        if result.get("done") and result.get("test_top1") is not None:
            self.best[stage] = max(self.best.get(stage, 0.0), float(result["test_top1"]))

    def _refresh(self) -> None:
        if self._progress is None:
            return
        snap = self.snapshot()["stages"]
        for stage, s in snap.items():
            status = f"running {s['running']}  pending {s['pending']}"
            if s["failed"]:
                status += f"  failed {s['failed']}"
            if s["best_test_top1"] is not None:
                status += f"  best test {s['best_test_top1']:.1f}%"
            self._progress.update(self._tasks[stage], completed=s["succeeded"] + s["failed"], status=status)
        done = sum(s["succeeded"] + s["failed"] for s in snap.values())
        running = sum(s["running"] for s in snap.values())
        self._progress.update(self._tasks["all"], completed=done, status=f"running {running}")

    def _write(self, force: bool = False, finished: bool = False) -> None:
        if self.storage is None:
            return
        now = time.time()
        if not force and now - self._written < 1.0:
            return
        self._written = now
        snap = self.snapshot()
        snap["finished"] = finished
        self.storage.write_text(PROGRESS_FILE, json.dumps(snap, indent=1))
