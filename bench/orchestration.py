"""Orchestration overhead: how fully the pipeline's own Tune configuration keeps GPU slots busy.

The Tuner is ``trials.pipeline``'s own (``main_tuner``: its TuneConfig with ``reuse_actors`` and
the NewestPendingFirst scheduler, its RunConfig with a checkpoint every epoch and FailureConfig,
the per-trial resources ``_trial_resources`` asks for, the StageProgress callback); only the
trainable differs: a StageTrainable whose job sleeps ``--epoch-seconds`` per epoch instead of
training, so the 2 cores here measure scheduling, not compute (its workers still import torch and
the library, as the pipeline's do). The grid runs twice, each time on a fresh simulated cluster
(``ray.cluster_utils.Cluster``: ``--nodes`` × 1 fake GPU × 1 CPU): with actor reuse (the pipeline)
and without (a new worker per trial, the pipeline before). Printed side by side:

- GPU-slot utilization = Σ trial busy time / (slots × makespan)   (target ≥ 0.9)
- per-trial scheduling overhead = (slots × makespan − Σ busy) / trials, in seconds
- where it goes: the first wave (until every slot runs a trial: workers start, importing torch
  and the library) and the mean gap between one trial's end and the next one's start on a node
- worker processes started, and trials per node (every node must run some)

``--fifo-too`` adds a third run: actor reuse with Tune's own FIFO choice of the next trial (the
pipeline's first try, 2026-11-30). With trials shorter than a worker's start (``--epochs 1
--epoch-seconds 0.3``) it shows the cause of the skipped node: a node's first worker is removed
while it starts, again and again, because the finished trials' actors take its trial.

    python bench/orchestration.py [--trials 48] [--epochs 5] [--epoch-seconds 1.0] [--timeline] [--fifo-too]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.tune.schedulers import FIFOScheduler

from adf_service.train import Runtime
from trials.config import TrialConfig
from trials.pipeline import _trial_resources
from trials.progress import StageProgress
from trials.spec import parse_grid
from trials.storage import JobStorage
from trials.trainable import StageTrainable
from trials.tuners import NewestPendingFirst, TunerRun, main_tuner

GRID = """
name: orchestration
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1]}}
resources: {{gpus_per_trial: 1, cpus_per_trial: 1}}
storage: {storage}
"""


class SleepJob:
    """Stands in for a trial's library job: each epoch holds the GPU slot for ``epoch_seconds``."""

    def __init__(self, trial: TrialConfig):
        self.epochs, self.seconds = trial.training["epochs"], trial.training["epoch_seconds"]
        self.epoch = 0

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    def step(self) -> dict[str, Any]:
        time.sleep(self.seconds)
        self.epoch += 1
        return {"epoch": self.epoch}

    def rows(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]


class SleepTrainable(StageTrainable):
    """The pipeline's trainable (setup, reset_config, step, checkpoints) with a job that sleeps."""

    def make_job(self, trial: TrialConfig, runtime: Runtime) -> SleepJob:
        return SleepJob(trial)


@dataclass
class TrialTimes:
    start: float = 0.0  # when its actor was ready (new or reused), seconds after fit() began
    stop: float = 0.0
    node: str = "?"
    pid: int = 0


class Timeline(tune.Callback):
    """Each trial's node, worker process, start and stop, as the driver sees them."""

    def __init__(self, started: float):
        self.started = started
        self.trials: dict[str, TrialTimes] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trials.setdefault(str(trial), TrialTimes()).start = time.perf_counter() - self.started

    def on_trial_result(self, iteration, trials, trial, result, **info):
        times = self.trials.setdefault(str(trial), TrialTimes())
        times.node, times.pid = result["node_id"], result["pid"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials.setdefault(str(trial), TrialTimes()).stop = time.perf_counter() - self.started


@dataclass
class Measurement:
    label: str
    makespan: float
    busy: float  # Σ over trials of their epochs' time (Tune's time_total_s)
    errors: int
    timeline: dict[str, TrialTimes] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)  # node ids, head first


def sleeping_trials(n: int, epochs: int, seconds: float, store: str) -> list[TrialConfig]:
    return [
        TrialConfig(stage="baselines", trial_key=f"sleep-{i:03d}", repeat=0, seed=i, store=store, modalities=None,
                    combo="R", training={"epochs": epochs, "epoch_seconds": seconds})
        for i in range(n)
    ]


def measure(args: argparse.Namespace, label: str, reuse_actors: bool) -> Measurement:
    """One grid on a fresh cluster, through the pipeline's Tuner."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(args.nodes - 1)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        with tempfile.TemporaryDirectory() as root:
            spec = parse_grid(GRID.format(store=root, storage=root))
            storage = JobStorage.of(root, "orchestration")
            storage.create()
            run = TunerRun(spec, storage, _trial_resources(spec), resume=False, max_failures=2)
            trials = sleeping_trials(args.trials, args.epochs, args.epoch_seconds, root)
            started = time.perf_counter()
            timeline = Timeline(started)
            progress = StageProgress({"baselines": len(trials)}, storage=storage, enabled=False)
            with progress:
                tuner = main_tuner(run, trials, [progress, timeline], SleepTrainable, reuse_actors=reuse_actors)
                grid = tuner.fit()
            makespan = time.perf_counter() - started
            busy = sum(r.metrics.get("time_total_s", 0.0) for r in grid)
            nodes = [cluster.head_node.node_id, *(w.node_id for w in workers)]
            return Measurement(label, makespan, busy, grid.num_errors, timeline.trials, nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()


def first_wave_and_gap(m: Measurement) -> tuple[str, str]:
    """Seconds until every node ran a trial; mean seconds from a trial's end to the next start on its node."""
    by_node: dict[str, list[TrialTimes]] = {}
    for t in m.timeline.values():
        by_node.setdefault(t.node, []).append(t)
    runs = [sorted(ts, key=lambda t: t.start) for ts in by_node.values()]
    first_wave = f"{max(ts[0].start for ts in runs):.1f} s" if len(runs) == len(m.nodes) else "never"
    gaps = [b.start - a.stop for ts in runs for a, b in zip(ts, ts[1:])]
    return first_wave, f"{sum(gaps) / len(gaps):.2f} s" if gaps else "-"


def summary(m: Measurement, args: argparse.Namespace) -> str:
    slots = args.nodes
    per_node = Counter(t.node for t in m.timeline.values())
    counts = "/".join(str(per_node.get(node, 0)) for node in m.nodes)
    workers = len({(t.node, t.pid) for t in m.timeline.values()})
    first_wave, gap = first_wave_and_gap(m)
    return (f"| {m.label} | {m.makespan:.1f} s | {m.busy / (slots * m.makespan):.2f} | "
            f"{(slots * m.makespan - m.busy) / args.trials:.2f} s | {first_wave} | {gap} | {workers} "
            f"| {counts} | {m.errors} |")


def print_timeline(m: Measurement) -> None:
    names = {node: "head" if i == 0 else f"node{i}" for i, node in enumerate(m.nodes)}
    print(f"\nreuse_actors {m.label}: trial, node, worker pid, start, stop (s after fit began)")
    for name, t in sorted(m.timeline.items(), key=lambda item: item[1].start):
        print(f"  {name}  {names.get(t.node, t.node[:8]):6} {t.pid:>7}  {t.start:7.1f}  {t.stop:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--timeline", action="store_true", help="print each trial's node, worker, start and stop")
    parser.add_argument("--fifo-too", action="store_true", help="a third run: reuse with Tune's FIFO choice")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a ~/.ray token would turn on token auth for the cluster

    off = measure(args, "off (before)", reuse_actors=False)
    on = measure(args, "on (the pipeline)", reuse_actors=True)
    measurements = [off, on]
    if args.fifo_too:
        fifo = FIFOScheduler.choose_trial_to_run  # the scheduler's choice is made on this driver
        with patch.object(NewestPendingFirst, "choose_trial_to_run", fifo):
            measurements.append(measure(args, "on, FIFO choice (2026-11-30)", reuse_actors=True))
    ideal = args.trials * args.epochs * args.epoch_seconds / args.nodes
    print(f"# bench/orchestration.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  ray {ray.__version__}  "
          f"{os.cpu_count()} cores; {args.nodes} nodes × 1 fake GPU × 1 CPU; {args.trials} trials × {args.epochs} "
          f"epochs × {args.epoch_seconds:g} s (ideal makespan {ideal:.1f} s); trials.pipeline's Tuner")
    print("| reuse_actors | makespan | GPU-slot utilization | overhead per trial | first wave | gap between "
          "trials | worker processes | trials per node (head first) | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in measurements:
        print(summary(m, args))
    utilization = on.busy / (args.nodes * on.makespan)
    print(f"utilization on / off: {(on.busy / on.makespan) / (off.busy / off.makespan):.2f}; "
          f"target ≥ 0.9 with reuse: {'met' if utilization >= 0.9 else 'not met'}")
    if args.timeline:
        for m in measurements:
            print_timeline(m)


if __name__ == "__main__":
    main()
