"""Settings for a service behind a proxy and a remote cluster: public URLs and the driver command."""

import asyncio
import time

import httpx

from api.app import create_app
from api.runner import RayJobs
from api.settings import Settings
from api.testing import unrunnable_store
from tests.api.live import UNRUNNABLE_GRID


def test_public_urls_and_the_driver_command_reach_the_answers_and_the_ray_job(ray_dashboard, tmp_path):
    settings = Settings(data_dir=tmp_path, ray_address=ray_dashboard, auth="local",
                        public_url="https://adf.example.org/", dashboard_url="https://ray.example.org:8443",
                        driver_command="/bin/echo")  # the "driver" only prints its arguments
    unrunnable_store(tmp_path)
    app = create_app(settings, reconcile_every=3600)

    async def submit() -> httpx.Response:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
                return await client.post("/v1/jobs", json=UNRUNNABLE_GRID)

    answer = asyncio.run(submit())
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"https://adf.example.org/v1/jobs/{job['id']}"
    assert job["dashboard_url"] == f"https://ray.example.org:8443/#/jobs/{job['ray_job_id']}"

    ray = RayJobs(ray_dashboard)
    deadline = time.monotonic() + 60
    while (status := ray.status(job["ray_job_id"])[0]) in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == "succeeded"
    assert f"Running entrypoint for job {job['ray_job_id']}: /bin/echo run-job {job['id']}" in ray.logs(job["ray_job_id"])
