"""The service owns its jobs (issue 15 item 3): a Ray head lost mid-job and replaced by a new one.

A real head (``ray start --head``, by its pid) runs a job submitted over REST to a real server;
once the job has finished a trial, the head is stopped by its pid and a new head started on the
same port. Nobody touches the service: it must find that the new cluster does not know the job,
resume it from its checkpoints by itself, and end it ``succeeded`` with every result row once.
"""

from __future__ import annotations

import json
import shutil
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

pytestmark = [pytest.mark.ray, pytest.mark.service, pytest.mark.timeout(600)]

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


def test_a_job_goes_on_by_itself_when_its_ray_head_is_replaced(head, tmp_path, store, tmp_path_factory):
    port, head_dir = head
    roots = json.dumps([str(tmp_path_factory.getbasetemp())])
    service = LiveService(tmp_path / "service", f"http://127.0.0.1:{port}", env_extra={
        "ADF_DATA_ROOTS": roots, "ADF_CPU_FALLBACK": "true", "ADF_AUTO_RESUME_BACKOFF_SECONDS": "1"}).start()
    try:
        client = service.client(service.token("alice"))
        grid = tiny_grid(store, name="head-lost", discretizations="all, topk", epochs=60)
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
