"""deploy/local-cluster.sh for real: a Ray head and one worker node with a fake GPU, each its
own `ray start` process tree; Ray sees both nodes and the GPU; `stop` ends exactly the
processes `start` recorded, by pid."""

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers.local_cluster import free_port, recorded, session_members
from tests.helpers.local_cluster import local_cluster_run as cluster_run

pytestmark = pytest.mark.ray


@pytest.fixture
def local_cluster_run(tmp_path):
    with cluster_run(tmp_path) as run:
        yield run


def gpus(stdout: str) -> list[float]:
    """The alive nodes' GPUs, sorted, from the marked line (Ray may print other lines to stdout)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("GPUS=")]
    return sorted(json.loads(line.removeprefix("GPUS=")))


@pytest.mark.timeout(150)
def test_a_head_and_a_worker_with_a_fake_gpu_start_are_seen_by_ray_and_stop_by_pid(local_cluster_run):
    run = local_cluster_run
    gcs, dashboard = free_port(), free_port()
    started = run("start", "--workers", "1", "--gpus-per-worker", "1", "--cpus-per-worker", "1",
                  "--head-cpus", "1", "--port", str(gcs), "--dashboard-port", str(dashboard),
                  "--object-store-mb", "100")
    run.pids = pids = recorded(run.state)
    assert started.returncode == 0, started.stdout + started.stderr
    assert set(pids) == {"head", "worker-1"}
    assert all(session_members(pid) for pid in pids.values())  # each node runs in its own session

    url = f"http://127.0.0.1:{dashboard}"
    assert f"adf-service serve --ray-address {url}" in started.stdout
    assert (run.state / "cluster.env").read_text().split()[:2] == [f"RAY_ADDRESS=127.0.0.1:{gcs}",
                                                                     f"ADF_RAY_ADDRESS={url}"]
    with urllib.request.urlopen(f"{url}/api/version", timeout=10) as response:  # the Jobs API's server
        assert json.load(response)["ray_version"]

    gpus_per_node = (f"import json, ray; ray.init(address='127.0.0.1:{gcs}', logging_level='ERROR', "
                     "log_to_driver=False); "
                     "print('GPUS=' + json.dumps([n['Resources'].get('GPU', 0) for n in ray.nodes() if n['Alive']]))")
    seen = subprocess.run([sys.executable, "-c", gpus_per_node], env=run.env, capture_output=True, text=True,
                          timeout=60)
    assert seen.returncode == 0, seen.stderr
    assert gpus(seen.stdout) == [0, 1.0]  # the head and the worker's fake GPU

    added = run("add-worker", "--gpus-per-worker", "1", "--cpus-per-worker", "1")  # e.g. for a node that died
    assert added.returncode == 0 and "Started worker-2" in added.stdout, added.stdout + added.stderr
    run.pids = pids = recorded(run.state)
    assert set(pids) == {"head", "worker-1", "worker-2"} and session_members(pids["worker-2"])
    seen = subprocess.run([sys.executable, "-c", gpus_per_node], env=run.env, capture_output=True, text=True,
                          timeout=60)
    assert gpus(seen.stdout) == [0, 1.0, 1.0]

    again = run("start", "--port", str(free_port()), "--dashboard-port", str(free_port()))
    assert again.returncode == 1 and "still runs" in again.stderr  # one cluster per state dir

    stopped = run("stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines() == [f"worker-2 (pid {pids['worker-2']}): stopped",
                                           f"worker-1 (pid {pids['worker-1']}): stopped",
                                           f"head (pid {pids['head']}): stopped"]
    assert {role: session_members(pid) for role, pid in pids.items()} == {"head": [], "worker-1": [], "worker-2": []}
    assert recorded(run.state) == {}
    assert run("status").returncode == 1


@pytest.mark.timeout(150)
def test_a_run_that_keeps_logs_leaves_every_nodes_ray_logs(tmp_path):
    kept = tmp_path / "ray-logs"  # what bench/faults.py --keep reads a dead driver's log from
    with cluster_run(tmp_path, keep_logs=kept) as run:
        started = run("start", "--workers", "1", "--cpus-per-worker", "1", "--head-cpus", "1",
                      "--port", str(free_port()), "--dashboard-port", str(free_port()), "--object-store-mb", "100")
        run.pids = recorded(run.state)
        assert started.returncode == 0, started.stdout + started.stderr
    sessions = sorted(kept.glob("*/session_*"))
    assert [s.parent.name for s in sessions] == ["head", "worker-1"]
    assert all((s / "raylet.out").stat().st_size > 0 for s in sessions)
    assert (sessions[0] / "gcs_server.out").exists()  # the head's own
