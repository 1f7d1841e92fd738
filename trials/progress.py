"""Live progress of a job: trials done / running / pending per stage, best so far, ETA.

Counts are recomputed from Tune's own trial list on every step, so a resumed job counts
the trials it finished before its driver died. Besides the bars on the terminal, the same
counts go to ``<job>/progress.json`` (rewritten atomically at most once a second and at
every change), which the service reads (:func:`trials.storage.read_progress`, no Ray there)
to answer "how far is my job". A resumed job starts from the counts its earlier driver wrote;
a driver whose job a newer attempt has taken over stops at its next write (Fenced).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from ray import tune
from rich.progress import Progress

from adf_service.console import progress_bar
from trials.config import TrialConfig
from trials.storage import Fenced, JobStorage, check_lease, write_progress
from trials.usage import UsageLedger

__all__ = ["StageProgress", "trial_stage"]

_STATUS = {"TERMINATED": "succeeded", "ERROR": "failed", "RUNNING": "running", "PAUSED": "running"}


def trial_stage(trial) -> str:
    """A grid trial carries its stage in its config; a BOHB trial's config is BOHB's sample."""
    return TrialConfig.stage_in_tune(trial.config) or "bohb"


class StageProgress(tune.Callback):
    """A rich progress bar per stage and one for all trials, fed by Tune (on the driver).

    Args:
        totals: trials expected per stage (BOHB's are created as it samples them).
        storage: the job's storage, where ``progress.json`` goes; None writes nothing.
        enabled: show bars on the terminal.
        usage: the job's UsageLedger (trials/usage.py): its totals and running trials go into progress.json.
    """

    def __init__(self, totals: dict[str, int], storage: JobStorage | None = None, enabled: bool = True,
                 attempt: int | None = None, usage: UsageLedger | None = None):
        self.totals = {stage: n for stage, n in totals.items() if n}
        self.storage = storage
        self.enabled = enabled
        self.attempt = attempt  # the job's attempt this driver is: an older one stops writing (Fenced)
        self.fenced = False
        self.usage = usage
        self.counts: dict[str, Counter] = {stage: Counter() for stage in self.totals}
        self.best: dict[str, float] = {}
        self.unlearned: dict[str, set[str]] = {}  # per stage: trials whose supernet did not learn
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

    def resume_from(self, previous: dict[str, Any] | None) -> StageProgress:
        """Start from the counts an earlier driver of the job wrote (its progress.json), not from
        zeros: a resumed job shows what it had done until Tune's restored trials are counted."""
        for stage, counts in ((previous or {}).get("stages") or {}).items():
            if stage in self.counts:
                done = {k: int(counts.get(k) or 0) for k in ("succeeded", "failed")}
                self.counts[stage] = Counter({k: n for k, n in done.items() if n})
                if counts.get("best_test_top1") is not None:
                    self.best[stage] = float(counts["best_test_top1"])
                if counts.get("unlearned"):
                    self.unlearned[stage] = {f"earlier-{i}" for i in range(int(counts["unlearned"]))}
        if previous and previous.get("started_at"):
            self.started = float(previous["started_at"])
        return self

    def settle(self, rows: list[dict[str, Any]]) -> None:
        """The final counts, from the job's result rows (one per trial and stage): what the tables hold."""
        for stage in self.counts:
            self.counts[stage] = Counter(r["status"] for r in rows if r["stage"] == stage)
            # The job has ended: a stage's trials are its rows (BOHB without a base ran none).
            self.totals[stage] = sum(self.counts[stage].values())
            tops = [r["test_top1"] for r in rows if r["stage"] == stage and r.get("test_top1") is not None]
            if tops:
                self.best[stage] = max(tops)
            self.unlearned[stage] = {r["trial_key"] for r in rows if r["stage"] == stage and r.get("learned") is False}
        self._refresh()

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
        if not self.fenced:
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
                "unlearned": len(self.unlearned.get(stage, ())),
            }
        snap = {"stages": stages, "started_at": self.started, "updated_at": time.time()}
        return snap | (self.usage.progress() if self.usage is not None else {})

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
        if not result.get("done"):
            return
        if result.get("test_top1") is not None:
            self.best[stage] = max(self.best.get(stage, 0.0), float(result["test_top1"]))
        if json.loads(result.get("rows") or "{}").get("search", {}).get("learned") is False:
            # The search's genotype is the argmax of an α that never learned: no searched result.
            self.unlearned.setdefault(stage, set()).add(trial.trial_id)
            self._refresh()
            self._write(force=True)

    def _refresh(self) -> None:
        if self._progress is None:
            return
        snap = self.snapshot()["stages"]
        for stage, s in snap.items():
            status = f"running {s['running']}  pending {s['pending']}"
            if s["failed"]:
                status += f"  failed {s['failed']}"
            if s["unlearned"]:
                status += f"  unlearned {s['unlearned']}"
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
        try:
            check_lease(self.storage, self.attempt)
        except Fenced:
            self.fenced = True
            raise
        snap = self.snapshot()
        snap["finished"] = finished
        snap["attempt"] = self.attempt
        write_progress(self.storage, snap)
