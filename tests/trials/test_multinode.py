"""Several nodes (ray.cluster_utils.Cluster, one fake GPU each): trials spread over every node while
workers are reused (the grid's reuse_actors), and a lost node loses nothing."""

import json

import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

from trials.pipeline import run_grid
from trials.spec import parse_grid

GRID = """
name: multi
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all, topk], inputs: [1, 2], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 3, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose], [rgb], [flow]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 1, cpus_per_trial: 1}}
storage: {storage}
"""


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


class RemoveNodeOnce(ray.tune.Callback):
    def __init__(self, cluster, node):
        self.cluster, self.node, self.removed = cluster, node, False

    def __getstate__(self):  # Tune pickles callbacks with its experiment state
        return {"removed": self.removed}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.removed and result.get("node_id") == self.node.node_id:
            self.removed = True
            self.cluster.remove_node(self.node)


def test_trials_spread_over_nodes_and_a_removed_node_loses_no_result(cluster, store, tmp_path):
    cluster, workers = cluster
    spec = parse_grid(GRID.format(store=store.path, storage=tmp_path))
    remover = RemoveNodeOnce(cluster, workers[0])
    outcome = run_grid(spec, job_id="multi", show_progress=False, callbacks=[remover])
    assert remover.removed
    rows = {s: pq.read_table(outcome.tables[s]).to_pylist() for s in ("baselines", "search", "evaluation")}
    assert [len(rows[s]) for s in rows] == [3, 4, 4]
    assert all(r["status"] == "succeeded" for stage in rows.values() for r in stage)
    results = [json.loads(line) for path in outcome.job_dir.glob("*/result.json")
               for line in path.read_text().splitlines()]
    assert len({r["node_id"] for r in results}) == 3  # head and both workers ran trials
    assert len({r["pid"] for r in results}) < 7  # and workers took further trials (reuse_actors)
