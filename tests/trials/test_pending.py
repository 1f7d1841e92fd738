"""Trials no node can hold (issue 15 item 5): noticed within the grace, reported in pending.json with
what a trial asks and what the cluster has, then failed with that message (``when_unschedulable:
fail``) or waited for (``wait``) until a node that can hold them comes, when the report goes away.

A real local Ray whose head has 1 CPU and no GPU runs a grid whose trials ask for a GPU and may not
fall back to CPUs; the autoscaler is played by the test, adding a GPU node (tests/trials/test_gpu_wait.py).
"""

import subprocess
import threading
import time

import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

from api.testing import ADF
from trials.grid_sections import ResourceSpec
from trials.pending import (
    GRACE_ENV,
    PENDING_FILE,
    Unschedulable,
    pending_notice,
    pending_report,
    read_pending,
)
from trials.pipeline import run_grid
from trials.spec import parse_grid
from trials.storage import JobStorage

pytestmark = pytest.mark.ray

GRACE = 3.0
GRID = """\
name: pending
dataset: {{store: {store}}}
search: {{enabled: false}}
baselines: {{combos: [[rgb]], repeats: 1, training: {{epochs: 1, batch_size: 16, lr: 0.05}}}}
resources:
  gpus_per_trial: 1
  cpus_per_trial: {cpus}
  when_unschedulable: {policy}
  pending_timeout_s: 120
storage: {storage}
"""


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setenv(GRACE_ENV, str(GRACE))


def grid(store, storage, policy: str, cpus: int = 1):
    return parse_grid(GRID.format(store=store.path, storage=storage, policy=policy, cpus=cpus))


def test_with_fail_a_gpu_grid_on_a_cluster_without_gpus_fails_after_the_grace_saying_why(
        cluster, store, tmp_path, short_grace):
    started = time.monotonic()
    with pytest.raises(Unschedulable) as failure:
        run_grid(grid(store, tmp_path, "fail"), job_id="fails", show_progress=False)
    assert time.monotonic() - started < 60  # the grace, and the driver's start
    storage = JobStorage.of(str(tmp_path), "fails")
    report = read_pending(storage)
    assert report["asked"] == {"CPU": 1.0, "GPU": 1.0}
    assert report["nodes"] == [{"CPU": 1.0, "GPU": 0.0}] and report["available"]["GPU"] == 0.0
    assert report["unschedulable"] and report["fail"] and report["updated_at"] - report["since"] >= GRACE
    assert str(failure.value) == report["message"] == pending_notice(storage)
    assert str(failure.value).startswith("no alive node can run a trial: each trial asks for 1 CPU and 1 "
                                         "GPU on one node, and the cluster has 1 node of 1 CPU / 0 GPU (free")
    assert "(resources.when_unschedulable: fail)" in str(failure.value)


def test_with_wait_the_report_stays_until_a_node_that_can_hold_the_trials_comes(
        cluster, store, tmp_path, short_grace):
    storage = JobStorage.of(str(tmp_path), "waits")
    outcome = {}
    driver = threading.Thread(target=lambda: outcome.update(
        job=run_grid(grid(store, tmp_path, "wait"), job_id="waits", show_progress=False)))
    driver.start()
    deadline = time.monotonic() + 60
    while pending_notice(storage) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    notice = pending_notice(storage)
    assert notice is not None and "waiting for the cluster to add one" in notice
    assert "pending_timeout_s: 120" in notice
    cluster.add_node(num_cpus=1, num_gpus=1)  # what the autoscaler would start
    driver.join(timeout=180)
    assert not driver.is_alive()
    rows = pq.read_table(outcome["job"].tables["baselines"]).to_pylist()
    assert [r["status"] for r in rows] == ["succeeded"]
    assert not storage.exists(PENDING_FILE) and pending_notice(storage) is None


def test_run_refuses_a_trial_no_node_of_its_cluster_can_hold_before_any_trial_runs(cluster, store, tmp_path):
    (tmp_path / "g.yaml").write_text(GRID.format(store=store.path, storage=tmp_path, policy="fail", cpus=4))
    command = [ADF, "run", str(tmp_path / "g.yaml"), "--address", cluster.address, "--job-id", "big"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    asks = "g.yaml line 7: resources.cpus_per_trial: a trial asks for 4 CPU and 1 GPU on one node"
    assert asks in done.stderr
    assert not (tmp_path / "big").exists()


def test_the_report_waits_out_pending_timeout_s_then_fails_and_never_fails_for_busy_nodes():
    wait = ResourceSpec(when_unschedulable="wait", pending_timeout_s=600)
    asked, nodes, free = {"CPU": 1.0, "GPU": 1.0}, [{"CPU": 4.0, "GPU": 0.0}], {"CPU": 4.0}
    early = pending_report(asked, nodes, free, since=1000.0, now=1060.0, resources=wait)
    assert not early["fail"] and early["fails_at"] == 1600.0
    assert "540 s more, then the job fails" in early["message"]
    late = pending_report(asked, nodes, free, since=1000.0, now=1600.0, resources=wait)
    assert late["fail"] and "no such node came in 600 s (resources.pending_timeout_s)" in late["message"]
    busy = pending_report(asked, [{"CPU": 4.0, "GPU": 1.0}], {"CPU": 3.0, "GPU": 0.0}, since=0.0,
                          now=10_000.0, resources=ResourceSpec(when_unschedulable="fail"))
    assert not busy["unschedulable"] and not busy["fail"]
    assert "has that, but not free: waiting for other work to end" in busy["message"]
    starting = pending_report(asked, [{"CPU": 4.0, "GPU": 1.0}], {"CPU": 4.0, "GPU": 1.0}, since=0.0,
                              now=90.0, resources=wait)
    assert not starting["fail"]
    assert "has that free: waiting for their workers to start" in starting["message"]
