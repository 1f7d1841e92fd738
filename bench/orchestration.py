"""Orchestration overhead: how fully Ray Tune keeps GPU slots busy with short trials.

A simulated cluster (``ray.cluster_utils.Cluster``: 4 nodes × 1 fake GPU × 1 CPU) runs a
grid of short trials configured like ``trials.pipeline`` (one GPU each, a checkpoint every
epoch, FailureConfig). Each epoch sleeps instead of training, so the 2 cores here measure
scheduling, not compute. Printed side by side from one run:

- GPU-slot utilization = Σ trial busy time / (slots × makespan)   (target ≥ 0.9)
- per-trial scheduling overhead = (slots × makespan − Σ busy) / trials, in seconds

    python bench/orchestration.py [--trials 48] [--epochs 5] [--epoch-seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig


class SleepTrainable(tune.Trainable):
    """An epoch that holds its GPU slot for ``epoch_seconds`` and checkpoints like a real trial."""

    def setup(self, config):
        self.epoch, self.seconds, self.epochs = 0, config["epoch_seconds"], config["epochs"]

    def step(self):
        time.sleep(self.seconds)
        self.epoch += 1
        return {"epoch": self.epoch, "done": self.epoch >= self.epochs}

    def reset_config(self, new_config):  # lets Tune reuse this actor for the next trial
        self.setup(new_config)
        return True

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "epoch"), "w") as f:
            f.write(str(self.epoch))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "epoch")) as f:
            self.epoch = int(f.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--no-reuse-actors", action="store_true", help="a new worker process per trial")
    args = parser.parse_args()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(SleepTrainable, {"cpu": 1, "gpu": 1}),
                param_space={
                    "epochs": args.epochs,
                    "epoch_seconds": args.epoch_seconds,
                    "i": tune.grid_search(list(range(args.trials))),
                },
                tune_config=TuneConfig(reuse_actors=not args.no_reuse_actors),
                run_config=RunConfig(
                    name="orchestration",
                    storage_path=storage,
                    failure_config=FailureConfig(max_failures=2),
                    checkpoint_config=CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
                    verbose=0,
                ),
            )
            started = time.perf_counter()
            grid = tuner.fit()
            makespan = time.perf_counter() - started
            busy = sum(r.metrics["time_total_s"] for r in grid)
            errors = grid.num_errors
    finally:
        ray.shutdown()
        cluster.shutdown()
    slots = args.nodes
    ideal = args.trials * args.epochs * args.epoch_seconds / slots
    print(f"# bench/orchestration.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  ray {ray.__version__}  "
          f"{os.cpu_count()} cores; {args.nodes} nodes × 1 fake GPU; {args.trials} trials × {args.epochs} "
          f"epochs × {args.epoch_seconds:g} s; reuse_actors={not args.no_reuse_actors}")
    print(f"makespan {makespan:.1f} s (ideal {ideal:.1f} s), busy {busy:.1f} slot-s, errors {errors}")
    print(f"GPU-slot utilization {busy / (slots * makespan):.2f} (target ≥ 0.9); "
          f"scheduling overhead {(slots * makespan - busy) / args.trials:.2f} s per trial")


if __name__ == "__main__":
    main()
