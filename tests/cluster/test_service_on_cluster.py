"""The service against a multi-process Ray cluster (issue 14 item 2), marked `cluster`: left out of
the default run, CI runs `pytest -m cluster` as a step of its own.

`deploy/local-cluster.sh` starts a head (no GPU) and two worker nodes with one fake GPU each, every
node its own `ray start` process tree; `adf-service serve --ray-address` runs over it with its
results on a second directory standing in for shared storage. A grid goes in over REST; once a
trial has finished on one worker, that worker's raylet is killed by its pid. The job must end
`succeeded` with every result row exactly once, and its rows must name both workers' nodes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.testing import LiveService
from tests.api.live import wait_for_status
from tests.helpers.local_cluster import free_port, local_cluster_run, recorded, session_members

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.service, pytest.mark.timeout(600)]

GRID = """
name: on-cluster
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all, topk], inputs: [1], cells: [1], channels: 8}}
repeats: 2
search: {{epochs: 3, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 3, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose], [rgb]], repeats: 2, training: {{epochs: 6, batch_size: 16, lr: 0.05}}}}
random: {{repeats: 1}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 1, cpus_per_trial: 1}}
seed: 11
"""


def nodes(gcs: str, env: dict[str, str]) -> dict[str, dict]:
    """node id → {gpus, socket (its raylet's socket path), alive}, as the cluster's GCS says."""
    # Ray may print other lines to stdout (a dead worker's "(raylet) ..." notice): the answer is the marked one.
    script = (f"import json, ray; ray.init(address='{gcs}', logging_level='ERROR', log_to_driver=False); "
              "print('NODES=' + json.dumps({n['NodeID']: {'gpus': n['Resources'].get('GPU', 0), "
              "'socket': n['RayletSocketName'], 'alive': n['Alive']} for n in ray.nodes()}))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    (answer,) = [line for line in done.stdout.splitlines() if line.startswith("NODES=")]
    return json.loads(answer.removeprefix("NODES="))


def raylet_pid(session: int, socket: str) -> int:
    """The raylet of the node whose `ray start` leads ``session`` and serves ``socket``: found among
    that node's own processes, killed by its pid."""
    for pid in session_members(session):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"raylet") and f"--raylet_socket_name={socket}".encode() in cmdline:
            return pid
    raise AssertionError(f"no raylet serving {socket} in session {session}")


def test_a_grid_through_the_service_survives_a_killed_worker_raylet_and_uses_every_gpu_node(store, tmp_path):
    shared = tmp_path / "shared-storage"  # stands in for the storage every node mounts
    shared.mkdir()
    with local_cluster_run(tmp_path) as run:
        gcs_port, dashboard_port = free_port(), free_port()
        started = run("start", "--workers", "2", "--gpus-per-worker", "1", "--cpus-per-worker", "1",
                      "--head-cpus", "1", "--port", str(gcs_port), "--dashboard-port", str(dashboard_port),
                      "--object-store-mb", "100")
        assert started.returncode == 0, started.stdout + started.stderr
        run.pids = pids = recorded(run.state)
        gcs, dashboard = f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}"
        gpu_nodes = {nid: n for nid, n in nodes(gcs, run.env).items() if n["gpus"] == 1}
        assert len(gpu_nodes) == 2

        env = {"ADF_DATA_ROOTS": json.dumps([str(store.path.parent)]), "ADF_STORAGE": str(shared),
               "RAY_AUTH_MODE": "disabled"}
        service = LiveService(tmp_path / "service", dashboard, env_extra=env)
        (tmp_path / "service").mkdir()
        service.start()
        try:
            client = service.client(service.token("alice"))
            answer = client.post("/v1/jobs", content=GRID.format(store=store.path),
                                 headers={"Content-Type": "application/yaml"})
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]

            # Once a trial has finished on a worker, kill that worker's raylet by its pid.
            victim = None
            deadline = time.time() + 300
            while victim is None and time.time() < deadline:
                epochs = client.get(f"/v1/jobs/{job_id}/epochs").json()
                done = [e for e in epochs if e["epoch"] == e["epochs"] and e["node_id"] in gpu_nodes]
                if done:
                    victim = done[0]["node_id"]
                time.sleep(0.5)
            assert victim is not None, "no trial finished on a worker within 300 s"
            assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
            socket = gpu_nodes[victim]["socket"]
            session = next(pid for role, pid in pids.items() if role != "head" and _serves(pid, socket))
            killed = raylet_pid(session, socket)
            os.kill(killed, signal.SIGKILL)

            job = wait_for_status(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=420)
            assert job["status"] == "succeeded", job
            assert not Path(f"/proc/{killed}").exists() or _zombie(killed)
            deadline = time.time() + 120  # the GCS declares a node dead after its missed health checks
            while nodes(gcs, run.env)[victim]["alive"]:
                assert time.time() < deadline, f"node {victim} still alive 120 s after its raylet was killed"
                time.sleep(2)
            rows = client.get(f"/v1/jobs/{job_id}/results").json()
        finally:
            service.stop()

    counts = {"baselines": 4, "search": 4, "evaluation": 4, "random": 2}
    assert {stage: sum(r["stage"] == stage for r in rows) for stage in counts} == counts
    assert len({(r["stage"], r["trial_key"]) for r in rows}) == len(rows)  # every row once
    assert all(r["status"] == "succeeded" for r in rows)
    assert {r["node_id"] for r in rows} == set(gpu_nodes)  # both workers did work; the head (no GPU) none
    job_dir = shared / job_id
    assert (job_dir / "results" / "evaluation.parquet").is_file() and (job_dir / "report" / "report.html").is_file()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _serves(session: int, socket: str) -> bool:
    try:
        raylet_pid(session, socket)
    except AssertionError:
        return False
    return True
