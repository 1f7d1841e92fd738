"""BOHB warm start: earlier jobs' BOHB trials seed this job's BOHB model (``bohb.warm_start``).

Each BOHB trial of a source job gives its sampled hyper-parameters (its result row's config) and
its val loss after each epoch (the job's per-epoch rows, :mod:`trials.epochs`). HyperBand counts
budgets in units of this job's ``min_epochs`` (trials/bohb.py, ``time_attr="budget"``), so an epoch
count becomes a budget of this job only when it is a whole number of ``min_epochs`` that one of its
brackets stops at (:func:`bohb_budgets`); the other epochs are left out, and so are configurations
outside this grid's space (a batch size or optimizer it does not list, an lr or weight decay out
of its range): BOHB's model cannot hold them. What was used is written to :data:`WARM_START_FILE`.

A source's val losses come from its own training (its ``max_epochs`` set the lr schedule), so a
warm start helps most between jobs whose BOHB sections and data are alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trials.config import BOHB_HYPERPARAMETERS, TrialConfig
from trials.epochs import read_epochs
from trials.grid_sections import BohbSpec
from trials.spec import GridSpec
from trials.storage import JobStorage

__all__ = [
    "WARM_START_FILE",
    "Observation",
    "SourceSummary",
    "WarmStart",
    "bohb_budgets",
    "in_space",
    "source_observations",
    "warm_start_observations",
    "warm_start_problem",
]

WARM_START_FILE = "bohb_warm_start.json"  # <job>/bohb_warm_start.json: the sources and what each gave


@dataclass(frozen=True)
class Observation:
    """One earlier evaluation, as BOHB's model takes it."""

    config: dict[str, Any]  # BOHB_HYPERPARAMETERS → the sampled value
    budget: int  # in this job's HyperBand units: epochs / bohb.min_epochs
    loss: float  # the val loss after budget × min_epochs epochs


@dataclass(frozen=True)
class SourceSummary:
    """What one source job gave: its configurations used, their observations, and those skipped."""

    job: str  # the source's directory (path or URI)
    configs: int  # BOHB trials with at least one observation
    observations: int
    outside_space: int  # trials whose configuration this grid's space does not hold
    no_budget: int  # trials in the space that reached none of this job's budgets


@dataclass(frozen=True)
class WarmStart:
    """Every source's observations, and what each gave (the content of :data:`WARM_START_FILE`)."""

    observations: list[Observation] = field(default_factory=list)
    sources: list[SourceSummary] = field(default_factory=list)

    def to_json(self) -> str:
        used = {"observations": len(self.observations),
                "skipped": sum(s.outside_space + s.no_budget for s in self.sources)}
        return json.dumps({**used, "sources": [asdict(s) for s in self.sources]}, indent=1)


def _source_storage(job: str) -> JobStorage:
    """A source job's storage: a URI as it is, a path made absolute (as ``transfer.from_job``'s)."""
    return JobStorage.at(job if "://" in job else Path(job).expanduser().resolve())


def bohb_budgets(bohb: BohbSpec) -> list[int]:
    """The budgets (units of ``min_epochs``) at which this job's HyperBand brackets compare trials.

    Mirrors Ray's HyperBand (trials/bohb.py's ``max_t`` and ``eta``): bracket ``s`` starts at
    ``int(max_t / eta**s)`` and multiplies by ``eta`` up to ``max_t``."""
    max_t = max(bohb.max_epochs // bohb.min_epochs, 1)
    brackets = round(math.log(max_t) / math.log(bohb.eta)) + 1
    budgets = set()
    for s in range(brackets):
        r = int(max_t * bohb.eta ** -s)
        if r == 0:
            continue
        for _ in range(s + 1):
            budgets.add(r)
            r = int(min(r * bohb.eta, max_t))
    return sorted(budgets)


def in_space(config: dict[str, Any], bohb: BohbSpec) -> bool:
    """Whether BOHB's space of this grid holds ``config`` (its batch sizes and optimizers, its ranges)."""
    if any(config.get(name) is None for name in BOHB_HYPERPARAMETERS):
        return False
    return (config["batch_size"] in bohb.batch_sizes and config["optimizer"] in bohb.optimizers
            and bohb.lr[0] <= config["lr"] <= bohb.lr[1]
            and bohb.weight_decay[0] <= config["weight_decay"] <= bohb.weight_decay[1])


def source_observations(job: str, bohb: BohbSpec) -> tuple[list[Observation], SourceSummary]:
    """The observations one source job gives this grid's BOHB, and its summary.

    Raises ValueError when the job has no BOHB table (:func:`warm_start_problem` says so first)."""
    storage = _source_storage(job)
    rows = storage.read_parquet("bohb").to_pylist()
    losses: dict[str, dict[int, float]] = {}
    for epoch in read_epochs(storage):
        if epoch["stage"] == "bohb" and epoch["val_loss"] is not None and epoch["epoch"] % bohb.min_epochs == 0:
            losses.setdefault(epoch["trial_key"], {})[epoch["epoch"] // bohb.min_epochs] = epoch["val_loss"]
    budgets = set(bohb_budgets(bohb))
    found: list[Observation] = []
    configs = outside = no_budget = 0
    for row in sorted(rows, key=lambda r: r["trial_key"]):
        evaluation = TrialConfig.from_json(row["config"], where=f"{job}: {row['trial_key']}").evaluation or {}
        config = {name: evaluation.get(name) for name in BOHB_HYPERPARAMETERS}
        if not in_space(config, bohb):
            outside += 1
            continue
        reached = sorted((b, loss) for b, loss in losses.get(row["trial_key"], {}).items() if b in budgets)
        found += [Observation(config, b, loss) for b, loss in reached]
        configs += bool(reached)
        no_budget += not reached
    summary = SourceSummary(job, configs, len(found), outside, no_budget)
    return found, summary


def warm_start_observations(spec: GridSpec) -> WarmStart:
    """Every ``bohb.warm_start`` job's observations, in ascending budget (BOHB keeps no smaller
    budget's points once it has a model for a bigger one), and what each job gave."""
    observations: list[Observation] = []
    sources = []
    for job in spec.bohb.warm_start:
        found, summary = source_observations(job, spec.bohb)
        observations += found
        sources.append(summary)
    observations.sort(key=lambda o: o.budget)
    return WarmStart(observations, sources)


def warm_start_problem(spec: GridSpec) -> str | None:
    """Why a ``bohb.warm_start`` entry names no job with BOHB results; None when each does (or BOHB is
    off). `validate` and `run` ask; parsing a grid reads no file."""
    if not spec.bohb.enabled:
        return None
    for i, job in enumerate(spec.bohb.warm_start):
        where = f"bohb.warm_start[{i}]: {job!r}"
        try:
            storage = _source_storage(job)
            if not storage.exists():
                return f"{where}: no such job directory"
            if not storage.exists("results", "bohb.parquet"):
                return (f"{where} has no BOHB results (results/bohb.parquet): name the directory of a "
                        "finished job with a BOHB stage, <storage>/<job id>")
            if storage.read_parquet("bohb").num_rows == 0:
                return f"{where}: its BOHB stage has no trial (bohb was off, or skipped): nothing to warm-start from"
        except (ValueError, OSError) as exc:  # a URI pyarrow cannot open, or cannot reach
            return f"{where}: {exc}"
    return None
