"""A job's driver log through the service: ``GET /v1/jobs/{id}/logs`` and ``adf-service logs``,
read from a real local Ray's Jobs API behind a real uvicorn server.

The service's driver command (``ADF_DRIVER_COMMAND``) is a script that prints three ticks a
second apart and fails: a job of a few seconds whose log is known, so that following it can be
seen to stream.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from api.client import ServiceClient, ServiceError
from api.runner import RayJobs
from tests.api.live import ADF, LiveService, tiny_grid

TICK_SECONDS = 1.0
DRIVER = f"""#!/bin/sh
for i in 1 2 3; do echo "driver of $2: tick $i"; sleep {TICK_SECONDS}; done
echo "driver of $2: giving up" >&2
exit 3
"""


@pytest.fixture(scope="module")
def live(ray_dashboard, tmp_path_factory):
    """The service, its jobs' drivers the ticking script, one job of a user running at once (more wait queued)."""
    data_dir = tmp_path_factory.mktemp("service")
    driver = data_dir / "driver.sh"
    driver.write_text(DRIVER)
    driver.chmod(0o755)
    env = {"ADF_DATA_ROOTS": json.dumps([str(tmp_path_factory.getbasetemp())]), "ADF_DRIVER_COMMAND": str(driver),
           "ADF_MAX_RUNNING_JOBS_PER_USER": "1"}
    service = LiveService(data_dir, ray_dashboard, env_extra=env).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def tokens(live) -> dict[str, str]:
    return {"alice": live.token("alice"), "bob": live.token("bob")}


def submit(live, token: str, store, name: str) -> dict:
    answer = live.client(token).post("/v1/jobs", content=tiny_grid(store, name=name),
                                     headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_for_ray_job(live, token: str, job_id: str, timeout: float = 60) -> str:
    """The job's Ray submission id, once the queue has handed it to Ray."""
    deadline = time.monotonic() + timeout
    while (job := live.client(token).get(f"/v1/jobs/{job_id}").json())["ray_job_id"] is None:
        assert time.monotonic() < deadline, f"job {job_id} never reached Ray: {job}"
        time.sleep(0.2)
    return job["ray_job_id"]


@pytest.fixture(scope="module")
def followed(live, tokens, store):
    """A job followed from its start to its end: (job, its Ray job id, [(seconds since the start, chunk)]),
    and a second job of the same user submitted while the first runs (so it waits queued)."""
    job = submit(live, tokens["alice"], store, "followed")
    waiting = submit(live, tokens["alice"], store, "waiting")
    submission = wait_for_ray_job(live, tokens["alice"], job["id"])
    waiting_now = live.client(tokens["alice"]).get(f"/v1/jobs/{waiting['id']}/logs")
    start = time.monotonic()
    with ServiceClient(live.url, tokens["alice"]) as client:
        chunks = [(time.monotonic() - start, chunk) for chunk in client.logs(job["id"], follow=True)]
    ended = RayJobs(live.ray_address).status(submission)[0]
    return {"job": job, "submission": submission, "chunks": chunks, "ray_status_at_end": ended,
            "waiting": waiting, "waiting_logs": waiting_now}


def test_following_streams_the_drivers_output_as_it_comes_and_ends_with_the_job(live, followed):
    chunks = followed["chunks"]
    text = "".join(chunk for _, chunk in chunks)
    job_id = followed["job"]["id"]
    entrypoint = f"{live.env['ADF_DRIVER_COMMAND']} run-job {job_id} --attempt 1"
    assert f"Running entrypoint for job {followed['submission']}: {entrypoint}" in text  # Ray's own first line
    assert [f"driver of {job_id}: tick {i}" in text for i in (1, 2, 3)] == [True] * 3
    assert text.index("tick 3") < text.index(f"driver of {job_id}: giving up")  # stdout and stderr, in order
    first_tick = next(at for at, chunk in chunks if "tick 1" in chunk)
    assert chunks[-1][0] - first_tick >= 2 * TICK_SECONDS * 0.9  # streamed as written, not at the end at once
    assert followed["ray_status_at_end"] == "failed"  # the stream ended because the job did


def test_the_whole_log_afterwards_holds_what_following_gave(live, tokens, followed):
    answer = live.client(tokens["alice"]).get(f"/v1/jobs/{followed['job']['id']}/logs")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "".join(chunk for _, chunk in followed["chunks"])
    assert answer.text == RayJobs(live.ray_address).logs(followed["submission"])


def test_a_queued_job_has_no_log_yet_and_the_404_says_so(followed):
    answer = followed["waiting_logs"]
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert followed["waiting"]["id"] in detail and "queued" in detail and "no Ray job yet" in detail


@pytest.mark.parametrize("follow", [False, True])
def test_another_users_job_and_an_unknown_job_are_404(live, tokens, followed, follow):
    bob = live.client(tokens["bob"])
    params = {"follow": "true"} if follow else {}
    other = bob.get(f"/v1/jobs/{followed['job']['id']}/logs", params=params)
    unknown = live.client(tokens["alice"]).get("/v1/jobs/j000000000000/logs", params=params)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"] == f"no job {followed['job']['id']!r}"  # the same answer as a missing job
    with ServiceClient(live.url, tokens["bob"]) as client, pytest.raises(ServiceError) as refused:
        list(client.logs(followed["job"]["id"], follow=follow))
    assert refused.value.status == 404


def test_the_logs_command_prints_the_log_and_follows_an_ended_job_to_its_end(live, tokens, followed):
    whole = live.client(tokens["alice"]).get(f"/v1/jobs/{followed['job']['id']}/logs").text
    command = [ADF, "logs", followed["job"]["id"], "--server", live.url, "--token", tokens["alice"]]
    for extra in ([], ["--follow"]):
        done = subprocess.run(command + extra, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == whole, (extra, done.stderr)
    refused = subprocess.run([ADF, "logs", followed["job"]["id"], "--server", live.url, "--token", tokens["bob"]],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "404" in refused.stderr and refused.stdout == ""
