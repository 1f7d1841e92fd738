"""`adf-service serve` with no Ray address: it starts a local Ray head that runs the jobs,
outlives the server, is reused by the next server, and ends with `adf-service stop-ray`.

The job is one whose driver fails at once (its feature store does not exist): its error,
which only the driver can report, shows that the head ran it. Whole jobs through a live
server are tests/api/test_service.py and test_client.py.

`stop-ray` also removes Ray's record of the head it stopped (``ray_current_cluster``), which
``ray.init()`` would otherwise join, dead, for minutes: the unit tests below check that with a
stand-in head process and a record under a temporary RAY_TMPDIR."""

import subprocess
import sys

import httpx
import pytest

from api.localray import GCS_PORT_FILE, PID_FILE, _alive, ray_cluster_record, stop_local_ray
from api.ports import free_port
from api.testing import UNRUNNABLE_STORE
from tests.api.live import ADF, UNRUNNABLE_GRID, LiveService, wait_for_status


class Dashboard:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/version"

    def up(self) -> bool:
        """Whether the dashboard answers at all (this process has no Ray token: 401 counts)."""
        try:
            return httpx.get(self.url, timeout=5).status_code in (200, 401)
        except httpx.TransportError:
            return False


@pytest.mark.service
@pytest.mark.ray  # `serve` starts `ray start --head`
def test_serve_runs_jobs_on_its_own_local_ray_head_which_stop_ray_ends(tmp_path):
    port = free_port()
    head = Dashboard(port)
    service = LiveService(tmp_path, None, env_extra={"ADF_LOCAL_RAY_PORT": str(port)})
    try:
        service.start(timeout=180)
        pid = int((tmp_path / PID_FILE).read_text())
        gcs_port = (tmp_path / GCS_PORT_FILE).read_text().strip()
        assert _alive(pid) and head.up()
        with service.client(service.token("alice")) as alice:  # a job whose driver fails at once, on this head
            answer = alice.post("/v1/jobs", json=UNRUNNABLE_GRID)
            assert answer.status_code == 202, answer.text
            job = wait_for_status(alice, answer.json()["id"], {"failed"}, timeout=120)
        assert job["ray_job_id"] and UNRUNNABLE_STORE in job["error"], job

        service.stop()
        assert head.up()  # the head outlives the server ...
        service.start(timeout=60)  # ... and the next server uses it
        assert int((tmp_path / PID_FILE).read_text()) == pid
        service.stop()

        stopped = subprocess.run([ADF, "stop-ray"], env=service.env, capture_output=True, text=True, timeout=90)
        assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not _alive(pid) and not head.up() and not (tmp_path / PID_FILE).exists()
        record = ray_cluster_record()  # `ray start` recorded the head here; stop-ray took it away
        assert not record.exists() or not record.read_text().strip().endswith(f":{gcs_port}")
        again = subprocess.run([ADF, "stop-ray"], env=service.env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "no local Ray head" in again.stdout
    finally:
        service.stop()
        stop_local_ray(tmp_path)


@pytest.fixture
def ray_tmpdir(monkeypatch, tmp_path):
    """Ray's temp directory for this test only: its record of the last cluster is ``ray/ray_current_cluster``."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))
    (tmp_path / "raytmp" / "ray").mkdir(parents=True)
    return tmp_path / "raytmp" / "ray"


@pytest.fixture
def head(tmp_path):
    """A stand-in for `ray start --head --block` (its command line is what stop_local_ray checks)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "start", "--head"])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / PID_FILE).write_text(f"{process.pid}\n")
    (data_dir / GCS_PORT_FILE).write_text("41234\n")
    yield data_dir, process
    process.kill()
    process.wait()


def test_stop_ray_removes_rays_record_of_the_head_it_stopped(ray_tmpdir, head):
    data_dir, process = head
    assert ray_cluster_record() == ray_tmpdir / "ray_current_cluster"
    ray_cluster_record().write_text("192.0.2.7:41234")
    assert stop_local_ray(data_dir, wait=30) == process.pid
    assert process.wait(timeout=30) is not None
    assert not ray_cluster_record().exists()
    assert not (data_dir / PID_FILE).exists() and not (data_dir / GCS_PORT_FILE).exists()


def test_stop_ray_keeps_the_record_of_another_cluster(ray_tmpdir, head):
    data_dir, process = head
    ray_cluster_record().write_text("192.0.2.7:6379")
    assert stop_local_ray(data_dir, wait=30) == process.pid
    assert ray_cluster_record().read_text() == "192.0.2.7:6379"


def test_stop_ray_forgets_a_head_that_already_died(ray_tmpdir, head):
    data_dir, process = head
    process.kill()
    process.wait()
    ray_cluster_record().write_text("192.0.2.7:41234")
    assert stop_local_ray(data_dir) is None
    assert not ray_cluster_record().exists() and not (data_dir / PID_FILE).exists()
