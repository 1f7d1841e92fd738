"""Fractional GPUs (issue 14 item 4): `gpus_per_trial: 0.25` packs four small trials on one GPU.

A simulated node with two fake GPUs runs eight trials that ask for a quarter of a GPU each. Ray
must run four at once on one GPU, and never more than a whole GPU's worth on any one GPU (Ray
counts fractions per GPU, not only per node: ray#5902). Each row's `device` names the GPU Ray gave
its trial; the per-epoch rows give when each trial ran.
"""

import json
import re

import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

from trials.pipeline import run_grid
from trials.spec import parse_grid

pytestmark = pytest.mark.ray

GRID = """
name: quarter
dataset: {{store: {store}}}
search: {{enabled: false}}
baselines: {{combos: [[rgb, flow, pose]], repeats: 8, training: {{epochs: 30, batch_size: 8, lr: 0.05}}}}
resources: {{gpus_per_trial: 0.25, cpus_per_trial: 0.25}}
seed: 2
storage: {storage}
"""


@pytest.fixture
def two_gpu_node():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def busy_intervals(epochs: list[dict]) -> dict[str, tuple[float, float]]:
    """trial key → (start, end) in unix seconds: from its first epoch's start to its last epoch's end."""
    spans: dict[str, tuple[float, float]] = {}
    for e in epochs:
        start, end = e["timestamp"] - e["epoch_seconds"], e["timestamp"]
        old = spans.get(e["trial_key"], (start, end))
        spans[e["trial_key"]] = (min(old[0], start), max(old[1], end))
    return spans


def test_four_quarter_gpu_trials_share_one_gpu_at_once_and_no_gpu_is_overcommitted(two_gpu_node, store, tmp_path):
    spec = parse_grid(GRID.format(store=store.path, storage=tmp_path))
    outcome = run_grid(spec, job_id="quarter", show_progress=False)
    rows = pq.read_table(outcome.tables["baselines"]).to_pylist()
    assert len(rows) == 8 and all(r["status"] == "succeeded" for r in rows)
    gpu_of = {}
    for r in rows:
        found = re.search(r"Ray GPU ([0-9,]+)", r["device"])
        assert found, r["device"]
        gpu_of[r["trial_key"]] = found.group(1)
    assert set(gpu_of.values()) <= {"0", "1"}  # one GPU each: a quarter never spans two

    epochs = pq.read_table(outcome.job_dir / "results" / "epochs.parquet").to_pylist()
    spans = busy_intervals(epochs)
    most = {}
    for key, (start, end) in spans.items():  # at each trial's start, who else runs on its GPU
        moment = start + 1e-3
        sharing = [k for k, (s, e) in spans.items() if gpu_of[k] == gpu_of[key] and s <= moment < e]
        most[gpu_of[key]] = max(most.get(gpu_of[key], 0), len(sharing))
    assert max(most.values()) == 4, (most, json.dumps(spans))  # four at once on one GPU ...
    assert all(n <= 4 for n in most.values())  # ... and never more than a whole GPU's worth
