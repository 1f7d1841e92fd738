"""What a job's trials held and for how long: GPU- and CPU-seconds per trial attempt (issue 15, item 2).

:class:`UsageLedger`, a Tune callback on the driver, times every attempt of every trial by the
wall clock. An attempt runs from the start of the trial's actor (``on_trial_start``, also a
reused actor's) to its end: the trial completed, failed for good (``on_trial_error``), failed and
was queued again (``on_trial_recover``: a dead worker or node, an error with retries left), was
paused by HyperBand (BOHB) or its driver died. Definitions (docs/results.md, "Usage"):

- held seconds of an attempt = end − start; GPU-seconds = held × the GPUs the trial asked Ray
  for (its placement group), CPU-seconds likewise;
- a *lost* attempt ended in a failure and was retried (a retry by Tune, or a resume after its
  driver died): its seconds after its last checkpoint were redone, so lost = end − the last
  checkpoint (all of it when it wrote none). Trials checkpoint every epoch, so that is the work
  of at most one epoch, plus the restart. The rest of its seconds, and all of other attempts', are useful;
- a trial's ``attempts`` counts its runs: 1, plus one per retry (a pause is no new attempt).

The ledger is saved in the job's storage as ``usage.json`` (at most once a second, and at every
attempt's start and end); a resumed job's new driver reads it back (:meth:`UsageLedger.resume_from`),
ends the dead driver's open attempts at the time they were last saved, as lost, and goes on.
Trials are keyed by their trial key (a BOHB trial, which has no TrialConfig, by its Tune trial id).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ray import tune

from trials.config import TUNE_KEY
from trials.storage import Fenced, JobStorage, check_lease

__all__ = [
    "LOST_ENDINGS", "SECONDS", "USAGE_COLUMNS", "USAGE_FILE", "Attempt", "UsageLedger", "read_usage",
    "rows_summary", "usage_key", "usage_summary",
]

USAGE_FILE = "usage.json"  # the job's attempts, for a resumed driver and the curious (docs/results.md)
# How an attempt ended: "completed", "error" (failed for good), "retried" and "driver_died" (lost: its
# work since its last checkpoint was redone), "paused" (HyperBand: checkpointed, resumed later); None: running
LOST_ENDINGS = frozenset({"retried", "driver_died"})
SECONDS = ("gpu_seconds", "cpu_seconds", "lost_gpu_seconds", "lost_cpu_seconds")  # also progress.json's usage
# The result rows' columns the ledger fills (trials/results.py RESULT_SCHEMA, in its order)
USAGE_COLUMNS = ("gpus", "cpus", *SECONDS, "attempts")
SAVE_EVERY_S = 1.0


def usage_key(trial: Any) -> str:
    """The ledger's name of a Tune trial: its trial key; a BOHB trial's (no TrialConfig) Tune trial id."""
    data = (trial.config or {}).get(TUNE_KEY)
    return data["trial_key"] if data else trial.trial_id


@dataclass
class Attempt:
    """One run of a trial on one actor; times are Unix seconds (the driver's clock)."""

    trial_key: str
    n: int  # the trial's attempt: 1, then one more after each failure (resumed after a pause: the same n)
    start: float
    gpus: float  # what the trial asked Ray for
    cpus: float
    end: float | None = None  # None: running
    ended: str | None = None  # how: see LOST_ENDINGS
    last_result_at: float | None = None
    last_checkpoint_at: float | None = None
    epochs: int = 0  # results reported in this attempt
    node_id: str | None = None  # the Ray node of its last result

    @property
    def lost(self) -> bool:
        return self.ended in LOST_ENDINGS

    def held(self, now: float) -> float:
        """Seconds it held its resources (so far, while it runs)."""
        end = self.end if self.end is not None else now
        return max(end - self.start, 0.0)

    def lost_seconds(self, now: float) -> float:
        """Seconds of its work that were redone: those after its last checkpoint, when it was retried."""
        if not self.lost:
            return 0.0
        end = self.end if self.end is not None else now
        return min(max(end - (self.last_checkpoint_at or self.start), 0.0), self.held(now))


def _seconds(attempts: Iterable[Attempt], now: float) -> dict[str, float]:
    """GPU- and CPU-seconds, held and lost, of ``attempts``."""
    out = dict.fromkeys(SECONDS, 0.0)
    for a in attempts:
        held, lost = a.held(now), a.lost_seconds(now)
        out["gpu_seconds"] += held * a.gpus
        out["cpu_seconds"] += held * a.cpus
        out["lost_gpu_seconds"] += lost * a.gpus
        out["lost_cpu_seconds"] += lost * a.cpus
    return out


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f}" if hours >= 1 or hours == 0 else f"{hours:.2g}"


def usage_summary(totals: Mapping[str, float]) -> str:
    """``"14.2 GPU-hours, 3.1 of them lost to restarts"`` (CPU-hours when the job held no GPU): the words
    of the report, and of the service and ``adf-service status`` (they get them in progress.json)."""
    kind = "gpu" if totals.get("gpu_seconds") else "cpu"
    held, lost = totals.get(f"{kind}_seconds") or 0.0, totals.get(f"lost_{kind}_seconds") or 0.0
    of_them = f"{_hours(lost)} of them lost to restarts" if lost else "none lost to restarts"
    return f"{_hours(held)} {kind.upper()}-hours, {of_them}"


def rows_summary(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """:func:`usage_summary` of a job's result rows (each trial once: an evaluation row repeats its search
    row); None when no row records usage (a job from before it was recorded)."""
    counted = [r for r in rows if r["stage"] != "evaluation" and r.get("attempts") is not None]
    if not counted:
        return None
    return usage_summary({c: sum(r[c] or 0.0 for r in counted) for c in SECONDS})


def read_usage(storage: JobStorage) -> dict[str, Any] | None:
    """A job's ``usage.json``, or None before its driver wrote one."""
    try:
        return json.loads(storage.read_text(USAGE_FILE))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class UsageLedger(tune.Callback):
    """Every trial attempt of a job, timed by the wall clock on the driver (both Tuners' trials).

    Args:
        storage: the job's storage, where ``usage.json`` goes; None keeps it in memory only.
        attempt: the job's attempt this driver is (trials/storage.py's lease): an older one stops writing.
        clock: Unix seconds now.
    """

    def __init__(self, storage: JobStorage | None = None, *, attempt: int | None = None,
                 clock: Callable[[], float] = time.time):
        self.storage = storage
        self.lease = attempt
        self.clock = clock
        self.attempts: list[Attempt] = []
        self.fenced = False
        self._open: dict[str, Attempt] = {}  # trial key → its running attempt
        self._saved = 0.0

    def resume_from(self, previous: Mapping[str, Any] | None) -> UsageLedger:
        """Go on from what an earlier driver of the job saved (its usage.json): its running attempts
        ended when it last saved, and they are lost (the resumed job redoes them from their checkpoints)."""
        previous = previous or {}
        saved_at = float(previous.get("saved_at") or 0.0)
        for record in previous.get("attempts") or []:
            attempt = Attempt(**record)
            if attempt.end is None:
                attempt.end, attempt.ended = max(saved_at, attempt.start), "driver_died"
            self.attempts.append(attempt)
        return self

    # --- what the job reads ----------------------------------------------------------------------------

    def totals(self) -> dict[str, float]:
        """The job's GPU- and CPU-seconds, held and lost (running attempts until now), and GPU-hours."""
        out = _seconds(self.attempts, self.clock())
        return {**out, "gpu_hours": out["gpu_seconds"] / 3600}

    def per_trial(self) -> dict[str, dict[str, Any]]:
        """Trial key → its result rows' usage columns (:data:`USAGE_COLUMNS`), over all its attempts."""
        now = self.clock()
        by_trial: dict[str, list[Attempt]] = {}
        for a in self.attempts:
            by_trial.setdefault(a.trial_key, []).append(a)
        return {key: {"gpus": runs[-1].gpus, "cpus": runs[-1].cpus, **_seconds(runs, now),
                      "attempts": max(a.n for a in runs)} for key, runs in by_trial.items()}

    def running(self) -> dict[str, dict[str, Any]]:
        """Trial key → ``{last_progress_at, node_id, attempt}`` of each running trial: its last result's
        time, or its start's before it reported one (what tells a stale trial, api/usage.py)."""
        return {key: {"last_progress_at": a.last_result_at or a.start, "node_id": a.node_id, "attempt": a.n}
                for key, a in self._open.items()}

    def progress(self) -> dict[str, Any]:
        """What progress.json carries of it (trials/progress.py): ``usage`` (:meth:`totals` and their
        :func:`usage_summary`) and ``running`` (:meth:`running`)."""
        totals = self.totals()
        return {"usage": {**totals, "summary": usage_summary(totals)}, "running": self.running()}

    def fill(self, rows: Iterable[dict[str, Any]]) -> None:
        """Put each trial's usage into its result rows (a search's evaluation row repeats its search
        row's: one trial ran both); a trial that never started held nothing (0 attempts, 0 seconds)."""
        usage = self.per_trial()
        never = dict.fromkeys(USAGE_COLUMNS, 0.0) | {"gpus": None, "cpus": None, "attempts": 0}
        for row in rows:
            key = row["trial_id"] if row["stage"] == "bohb" else row["trial_key"]
            row.update(usage.get(key, never))

    # --- Tune's hooks --------------------------------------------------------------------------------

    def setup(self, **info) -> None:
        self._save(force=True)  # a resumed driver records the attempts it ended at once

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        key = usage_key(trial)
        if key in self._open:  # a HyperBand pause that no step saw: checkpointed, not lost
            self._end(key, "paused")
        self._begin(trial, key)

    def on_trial_restore(self, iteration: int, trials: list, trial, **info) -> None:
        key = usage_key(trial)
        if key not in self._open:  # restoring a checkpoint into a started actor is part of its attempt
            self._begin(trial, key)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        attempt = self._open.get(usage_key(trial))
        if attempt is None:
            return
        attempt.last_result_at = self.clock()
        attempt.epochs += 1
        attempt.node_id = result.get("node_id") or attempt.node_id
        self._save()

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        attempt = self._open.get(usage_key(trial))
        if attempt is not None:
            attempt.last_checkpoint_at = self.clock()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._end(usage_key(trial), "completed")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._end(usage_key(trial), "error")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._end(usage_key(trial), "retried")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        # HyperBand (BOHB) pauses a trial at a rung without a callback: it checkpointed and let its actor go
        for trial in trials:
            if trial.status == "PAUSED" and usage_key(trial) in self._open:
                self._end(usage_key(trial), "paused")
        self._save()

    def on_experiment_end(self, trials: list, **info) -> None:
        self._save(force=True)

    # --- bookkeeping ---------------------------------------------------------------------------------

    def _begin(self, trial, key: str) -> None:
        runs = [a for a in self.attempts if a.trial_key == key]
        n = 1
        if runs:
            last = runs[-1]
            if last.ended == "error":  # failed for good, and yet run again (a resume re-runs errored trials)
                last.ended = "retried"
            n = last.n if last.ended == "paused" else last.n + 1
        asked = trial.placement_group_factory.required_resources
        attempt = Attempt(key, n, self.clock(), float(asked.get("GPU", 0.0)), float(asked.get("CPU", 0.0)))
        self.attempts.append(attempt)
        self._open[key] = attempt
        self._save(force=True)

    def _end(self, key: str, how: str) -> None:
        attempt = self._open.pop(key, None)
        if attempt is None:  # e.g. a trial whose actor failed before it started
            return
        attempt.end, attempt.ended = self.clock(), how
        self._save(force=True)

    def _save(self, force: bool = False) -> None:
        if self.storage is None or self.fenced:
            return
        now = self.clock()
        if not force and now - self._saved < SAVE_EVERY_S:
            return
        self._saved = now
        try:
            check_lease(self.storage, self.lease)
        except Fenced:
            self.fenced = True
            raise
        record = {"saved_at": now, "attempts": [asdict(a) for a in self.attempts]}
        self.storage.write_text(USAGE_FILE, json.dumps(record, indent=1))
