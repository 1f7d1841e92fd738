"""deploy/local-cluster.sh for real: a Ray head and one worker node with a fake GPU, each its
own `ray start` process tree; Ray sees both nodes and the GPU; `stop` ends exactly the
processes `start` recorded, by pid."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY

pytestmark = pytest.mark.ray

SCRIPT = DEPLOY / "local-cluster.sh"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: a node `start` launched, whose `ray start`
    runs in a session of its own, with every process of that node."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(stat.parent.name))
    return members


def recorded(state: Path) -> dict[str, int]:
    """role -> pid, as `start` recorded them."""
    try:
        lines = (state / "pids").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {role: int(pid) for pid, role, *_ in (line.split() for line in lines if line.strip())}


@pytest.fixture
def local_cluster_run(tmp_path):
    """Runs local-cluster.sh with a state dir and a short temp root of its own; afterwards stops
    whatever it recorded and still runs, even when the test failed."""
    state = tmp_path / "state"
    temp_root = Path(tempfile.mkdtemp(prefix="adf-lc-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY": str(BIN / "ray"),
           # a token in ~/.ray would otherwise make this head require it
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        command = ["bash", str(SCRIPT), *args, "--dir", str(state)]
        if args[0] == "start":
            command += ["--temp-root", str(temp_root)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)

    run.state, run.env = state, env
    try:
        yield run
    finally:
        pids = recorded(state) or getattr(run, "pids", {})
        if any(session_members(pid) for pid in pids.values()):
            run("stop", timeout=90)
        for pid in pids.values():  # a stop that failed: this test's own nodes, by pid
            for member in session_members(pid):
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(temp_root, ignore_errors=True)


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
    assert (run.state / "cluster.env").read_text().split() == [f"RAY_ADDRESS=127.0.0.1:{gcs}",
                                                                 f"ADF_RAY_ADDRESS={url}"]
    with urllib.request.urlopen(f"{url}/api/version", timeout=10) as response:  # the Jobs API's server
        assert json.load(response)["ray_version"]

    gpus_per_node = (f"import json, ray; ray.init(address='127.0.0.1:{gcs}', logging_level='ERROR'); "
                     "print(json.dumps([n['Resources'].get('GPU', 0) for n in ray.nodes() if n['Alive']]))")
    seen = subprocess.run([sys.executable, "-c", gpus_per_node], env=run.env, capture_output=True, text=True,
                          timeout=60)
    assert seen.returncode == 0, seen.stderr
    assert sorted(json.loads(seen.stdout.splitlines()[-1])) == [0, 1.0]  # the head and the worker's fake GPU

    again = run("start", "--port", str(free_port()), "--dashboard-port", str(free_port()))
    assert again.returncode == 1 and "still runs" in again.stderr  # one cluster per state dir

    stopped = run("stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines() == [f"worker-1 (pid {pids['worker-1']}): stopped",
                                           f"head (pid {pids['head']}): stopped"]
    assert {role: session_members(pid) for role, pid in pids.items()} == {"head": [], "worker-1": []}
    assert recorded(run.state) == {}
    assert run("status").returncode == 1
