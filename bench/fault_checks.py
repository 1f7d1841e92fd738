"""What a fault run (bench/faults.py) records, and how it is judged: the kills, the jobs' final states
and rows, the problems found; the job store's integrity; Tune's count of a trial's failures."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pyarrow.parquet as pq

from trials.pipeline import ENDED_WITHOUT_RESULT
from trials.spec import validate_grid

KINDS = ("trial_worker", "worker_raylet", "driver", "ray_head", "api_server", "postgres")


@dataclass
class Kill:
    kind: str
    pid: int
    what: str  # the process, in words
    at: float  # seconds since the schedule began
    recovered_s: float = 0.0  # until the service answered and the cluster had its GPU nodes again


@dataclass
class Report:
    seed: int
    kills: list[Kill] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # kinds with no process to kill at their turn
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> final status
    errors: dict[str, str | None] = field(default_factory=dict)  # job id -> its error, for a job not succeeded
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    # (job, trial key, Tune's failures) of a trial killed more often than its job's max_failures: it fails, as it must
    exhausted: set[tuple[str, str, int]] = field(default_factory=set)
    lost_gpu_seconds: float = 0.0
    retried_trials: int = 0
    longest_recovery_s: float = 0.0

    def table(self) -> str:
        by_kind = Counter(k.kind for k in self.kills)
        lines = [f"seed {self.seed}: {len(self.kills)} kills " + ", ".join(f"{k} {by_kind[k]}" for k in KINDS),
                 f"skipped (nothing to kill at that turn): {dict(self.skipped) or 'none'}",
                 f"jobs: {len(self.jobs)}, final states {dict(Counter(self.jobs.values()))}",
                 f"result rows: {self.rows}, problems: {len(self.problems)}",
                 "trials failed after more failures than their grid's resources.max_failures (retries spent, rows "
                 f"`failed` as they must be): {sorted(self.exhausted) or 'none'}",
                 f"lost GPU-seconds counted: {self.lost_gpu_seconds:.1f}, trials with more than one attempt: "
                 f"{self.retried_trials}", f"longest recovery: {self.longest_recovery_s:.1f} s"]
        return "\n".join(lines + [f"  problem: {p}" for p in self.problems])


def check(report: Report, expected: dict[str, int], results: Callable[[str], list[dict]], shared: Path,
          conninfo: str) -> None:
    """Judge a run into ``report``: every job succeeded with each trial's row exactly once (``expected``:
    rows per stage of a job; ``results``: a job's rows through the API), the same rows in the store as
    in its tables under ``shared``; the store (``conninfo``) is consistent; the usage accounting
    counts the lost work."""
    for job_id, status in report.jobs.items():
        if status != "succeeded":
            report.problems.append(f"job {job_id} ended {status}: {(report.errors.get(job_id) or '')[:2000]}")
            continue
        rows = results(job_id)
        report.rows += len(rows)
        counts = Counter(r["stage"] for r in rows)
        if {s: counts[s] for s in expected} != expected:
            report.problems.append(f"job {job_id}: rows per stage {dict(counts)}, expected {expected}")
        keys = [(r["stage"], r["trial_key"]) for r in rows]
        if len(set(keys)) != len(keys):
            report.problems.append(f"job {job_id}: a trial's row more than once")
        for r in rows:
            if r["status"] == "succeeded":
                continue
            failures = tune_failures(shared / job_id / r["trial_key"])
            # Killed more often than it is retried: failing it is right, with the error that failed it. A row
            # that lost its error (Tune ended the trial without its result or an error) is a defect anyway.
            spent = failures > max_failures(shared / job_id)
            if spent and ENDED_WITHOUT_RESULT not in (r["error"] or ""):
                report.exhausted.add((job_id, r["trial_key"], failures))
            else:
                report.problems.append(f"job {job_id}: a failed row after {failures} failure(s) of its trial: "
                                       f"{(r['stage'], r['trial_key'], r['error'])}")
        tables = shared / job_id / "results"
        stored = {(r["stage"], r["trial_id"]) for stage in expected
                  for r in pq.read_table(tables / f"{stage}.parquet").to_pylist()}
        if stored != {(r["stage"], r["trial_id"]) for r in rows}:  # a killed attempt's row would differ here
            report.problems.append(f"job {job_id}: the store's rows differ from its Parquet tables")
        report.lost_gpu_seconds += sum(r.get("lost_gpu_seconds") or 0 for r in rows)
        report.retried_trials += sum((r.get("attempts") or 0) > 1 for r in rows if r["stage"] != "evaluation")
    report.problems += integrity(conninfo)
    if any(k.kind in ("trial_worker", "worker_raylet") for k in report.kills) and report.retried_trials == 0:
        report.problems.append("trial workers were killed, but no row counts a second attempt")
    report.longest_recovery_s = max((k.recovered_s for k in report.kills), default=0.0)


def max_failures(job_dir: Path) -> int:
    """The job's ``resources.max_failures``, from the grid its spec.json records."""
    spec = job_dir / "spec.json"
    return validate_grid(json.loads(spec.read_text()), source=str(spec)).resources.max_failures


def tune_failures(trial_dir: Path) -> int:
    """How often Tune saw the trial fail: the highest ``Failure # n`` of its error.txt (0 without one)."""
    try:
        text = (trial_dir / "error.txt").read_text()
    except OSError:
        return 0
    return max((int(n) for n in re.findall(r"^Failure # (\d+)", text, re.MULTILINE)), default=0)


def integrity(conninfo: str) -> list[str]:
    """The job store's own consistency: nothing active left, every succeeded job's rows and results
    time there, every row's job there, attempts JSON that parses, no job counted over its resumes."""
    problems = []
    with psycopg.connect(conninfo) as db:
        for job_id, status, results_at, n_trials, attempts_json in db.execute(
                "SELECT id, status, results_at, n_trials, attempts_json FROM jobs"):
            if status in ("queued", "running"):
                problems.append(f"store: job {job_id} still {status}")
            json.loads(attempts_json)
            if status == "succeeded":
                (rows,) = db.execute("SELECT count(*) FROM trials WHERE job_id = %s", (job_id,)).fetchone()
                if results_at is None or rows == 0:
                    problems.append(f"store: succeeded job {job_id} without results ({rows} rows)")
        (orphans,) = db.execute("SELECT count(*) FROM trials t LEFT JOIN jobs j ON j.id = t.job_id "
                                "WHERE j.id IS NULL").fetchone()
        if orphans:
            problems.append(f"store: {orphans} rows of no job")
    return problems
