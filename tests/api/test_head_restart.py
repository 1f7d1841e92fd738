"""The service owns its jobs (issue 15 items 3 and 5): Ray loses a job's driver, the service resumes it.

A real head (``ray start --head``, by its pid) runs a job submitted over REST to a real server.
Once the job has finished a trial, either the head is stopped by its pid and a new head started
on the same port, or, in the BOHB stage, the job's driver process is killed by its pid. Nobody
touches the service: it must see that Ray lost the driver, resume the job from its checkpoints by
itself, and end it ``succeeded`` with every result row once (BOHB with every sample: ray#39900).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.localray import start_local_ray, stop_local_ray
from api.ports import free_port
from api.testing import LiveService
from tests.api.live import tiny_grid, wait_for_status

pytestmark = [pytest.mark.ray, pytest.mark.service, pytest.mark.faults, pytest.mark.timeout(600)]

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def head(tmp_path, monkeypatch) -> Iterator[tuple[int, Path]]:
    """A head of its own (its files in a short temp directory: Ray's socket paths are short)."""
    ray_tmp = tempfile.mkdtemp(prefix="adf-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # for the heads and the server this test starts
    data_dir, port = tmp_path / "head", free_port()
    try:
        start_local_ray(data_dir, port)
        yield port, data_dir
    finally:
        stop_local_ray(data_dir)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def serve(head_url: str, tmp_path: Path, tmp_path_factory) -> LiveService:
    roots = json.dumps([str(tmp_path_factory.getbasetemp())])
    return LiveService(tmp_path / "service", head_url, env_extra={
        "ADF_DATA_ROOTS": roots, "ADF_CPU_FALLBACK": "true", "ADF_AUTO_RESUME_BACKOFF_SECONDS": "1"}).start()


def driver_pid(job_id: str, attempt: int) -> int:
    """The pid of the job's driver process, `adf-service run-job <job> --attempt <n>` (started by Ray for us)."""
    wanted = ["run-job", job_id, "--attempt", str(attempt)]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if proc.name.isdigit() and any(argv[i:i + 4] == wanted for i in range(len(argv))):
            return int(proc.name)
    raise LookupError(f"no driver of {job_id} attempt {attempt}")


def test_a_job_goes_on_by_itself_when_its_ray_head_is_replaced(head, tmp_path, store, tmp_path_factory):
    port, head_dir = head
    service = serve(f"http://127.0.0.1:{port}", tmp_path, tmp_path_factory)
    try:
        client = service.client(service.token("alice"))
        grid = tiny_grid(store, name="head-lost", discretizations="all, topk", epochs=300)  # running when the head goes
        job = client.post("/v1/jobs", content=grid, headers=YAML).json()
        deadline = time.time() + 240
        while True:  # a trial done, and more to do: the head goes mid-job
            seen = client.get(f"/v1/jobs/{job['id']}").json()
            stages = seen["progress"]
            done = sum(s.get("succeeded", 0) for s in stages.values())
            if done >= 1 and stages.get("search", {}).get("running", 0):
                break
            assert seen["status"] in ("queued", "running") and time.time() < deadline, seen
            time.sleep(0.5)
        server_pid = service.process.pid

        assert stop_local_ray(head_dir) is not None  # the head, its driver and its trials are gone
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
        start_local_ray(head_dir, port)  # a new, empty cluster at the same address

        ended = wait_for_status(client, job["id"], {"succeeded", "failed", "cancelled"}, timeout=400)
        assert ended["status"] == "succeeded", ended
        assert service.process.pid == server_pid and service.process.poll() is None  # never restarted
        assert [(a["attempt"], a["by"]) for a in ended["attempts"]] == [(1, "service"), (2, "service")]
        assert "Ray lost the job's driver" in ended["attempts"][1]["reason"]
        assert ended["ray_job_id"] == f"{job['id']}-2"
        rows = client.get(f"/v1/jobs/{job['id']}/results").json()
        once = Counter((r["stage"], r["trial_id"]) for r in rows)
        assert sorted(r["stage"] for r in rows) == ["baselines", "evaluation", "evaluation", "search", "search"]
        assert set(once.values()) == {1} and all(r["status"] == "succeeded" for r in rows)
    finally:
        service.stop()


def test_a_driver_killed_in_the_bohb_stage_is_resumed_by_the_service_and_bohb_ends_with_every_sample(
        head, tmp_path, store, tmp_path_factory):
    port, _ = head
    service = serve(f"http://127.0.0.1:{port}", tmp_path, tmp_path_factory)
    try:
        client = service.client(service.token("alice"))
        job = client.post("/v1/jobs", content=tiny_grid(store, name="bohb-lost", bohb="true"), headers=YAML).json()
        deadline = time.time() + 300
        while True:  # a BOHB trial done and more to come: the driver goes
            seen = client.get(f"/v1/jobs/{job['id']}").json()
            bohb = seen["progress"].get("bohb", {})
            if bohb.get("succeeded", 0) >= 1 and bohb.get("succeeded", 0) < bohb.get("total", 0):
                break
            assert seen["status"] in ("queued", "running") and time.time() < deadline, seen
            time.sleep(0.3)
        os.kill(driver_pid(job["id"], 1), signal.SIGKILL)

        ended = wait_for_status(client, job["id"], {"succeeded", "failed", "cancelled"}, timeout=400)
        assert ended["status"] == "succeeded", ended
        assert [(a["attempt"], a["by"]) for a in ended["attempts"]] == [(1, "service"), (2, "service")]
        rows = client.get(f"/v1/jobs/{job['id']}/results").json()
        bohb_rows = [r for r in rows if r["stage"] == "bohb"]
        assert len(bohb_rows) == 3 and all(r["status"] == "succeeded" for r in bohb_rows)  # samples: 3
        assert set(Counter((r["stage"], r["trial_id"]) for r in rows).values()) == {1}
    finally:
        service.stop()
