"""`adf-service serve` with no Ray address: it starts a local Ray head that runs the jobs,
outlives the server, is reused by the next server, and ends with `adf-service stop-ray`.

The job is one whose driver fails at once (its feature store does not exist): its error,
which only the driver can report, shows that the head ran it. Whole jobs through a live
server are tests/api/test_service.py and test_client.py."""

import subprocess

import httpx

from api.localray import PID_FILE, _alive, stop_local_ray
from api.ports import free_port
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


def test_serve_runs_jobs_on_its_own_local_ray_head_which_stop_ray_ends(tmp_path):
    port = free_port()
    head = Dashboard(port)
    service = LiveService(tmp_path, None, env_extra={"ADF_LOCAL_RAY_PORT": str(port)})
    try:
        service.start(timeout=180)
        pid = int((tmp_path / PID_FILE).read_text())
        assert _alive(pid) and head.up()
        with service.client(service.token("alice")) as alice:  # a job whose driver fails at once, on this head
            answer = alice.post("/v1/jobs", json=UNRUNNABLE_GRID)
            assert answer.status_code == 202, answer.text
            job = wait_for_status(alice, answer.json()["id"], {"failed"}, timeout=120)
        assert job["ray_job_id"] and "no-such-store" in job["error"], job

        service.stop()
        assert head.up()  # the head outlives the server ...
        service.start(timeout=60)  # ... and the next server uses it
        assert int((tmp_path / PID_FILE).read_text()) == pid
        service.stop()

        stopped = subprocess.run([ADF, "stop-ray"], env=service.env, capture_output=True, text=True, timeout=90)
        assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not _alive(pid) and not head.up() and not (tmp_path / PID_FILE).exists()
        again = subprocess.run([ADF, "stop-ray"], env=service.env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "no local Ray head" in again.stdout
    finally:
        service.stop()
        stop_local_ray(tmp_path)
