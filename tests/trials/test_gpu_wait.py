"""A GPU grid on a cluster with no GPU node yet waits for one (issue 11 item 6): it never turns
into a CPU run unless the grid allows it (``resources.allow_cpu_fallback``).

The autoscaler is played by the test: a ``ray.cluster_utils.Cluster`` whose head has CPUs
only, and a node with a (fake) GPU that joins while the job's trials wait.
"""

import json
import threading
import time

import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

from trials.pipeline import run_grid
from trials.spec import parse_grid

GRID = """
name: gpu-wait
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 1, warmup_epochs: 0, batch_size: 16, lr: 0.05, arch_lr: 0.003}}
evaluation: {{epochs: 1, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb], [flow]], repeats: 1, training: {{epochs: 1, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 1, cpus_per_trial: 1}}
storage: {storage}
"""


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_a_gpu_grid_waits_for_a_gpu_node_and_runs_its_trials_there(cluster, store, tmp_path, capfd):
    spec = parse_grid(GRID.format(store=store.path, storage=tmp_path))
    outcome = {}
    driver = threading.Thread(target=lambda: outcome.update(job=run_grid(spec, job_id="wait", show_progress=False)))
    driver.start()
    time.sleep(8)  # on the head's CPUs, these 1-epoch trials would have finished by now
    assert driver.is_alive() and not list(tmp_path.glob("wait/*/result.json"))
    assert "No live node has a GPU yet" in capfd.readouterr().err
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)  # what the autoscaler would start
    driver.join(timeout=180)
    assert not driver.is_alive()
    rows = pq.read_table(outcome["job"].tables["baselines"]).to_pylist()
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]
    nodes = {json.loads(line)["node_id"] for path in outcome["job"].job_dir.glob("*/result.json")
             for line in path.read_text().splitlines()}
    assert nodes == {gpu_node.node_id}


def test_with_allow_cpu_fallback_the_same_grid_runs_on_cpus_at_once(cluster, store, tmp_path, capfd):
    spec = parse_grid(GRID.format(store=store.path, storage=tmp_path)
                      .replace("cpus_per_trial: 1}", "cpus_per_trial: 1, allow_cpu_fallback: true}"))
    job = run_grid(spec, job_id="fallback", show_progress=False)
    assert [r["status"] for r in pq.read_table(job.tables["baselines"]).to_pylist()] == ["succeeded", "succeeded"]
    assert "the trials run on CPUs (resources.allow_cpu_fallback)" in capfd.readouterr().err
