"""A live service for tests: a real local Ray with its dashboard (the Jobs API), and
``adf-service serve`` as a real uvicorn server on 127.0.0.1 in its own process
(:class:`api.testing.LiveService`, shared with bench/api.py), which a test may kill (by its
pid) and start again over the same data directory; and grids small enough to run in a test."""

from __future__ import annotations

import time

import httpx

from api.ports import free_port
from api.testing import ADF, UNRUNNABLE_GRID, LiveService

__all__ = ["ADF", "TINY_GRID", "UNRUNNABLE_GRID", "LiveService", "free_port", "tiny_grid", "wait_for_status"]

TINY_GRID = """
name: {name}
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [{discretizations}], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: {epochs}, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: {bohb}, samples: 3, min_epochs: 1, max_epochs: 3, eta: 3, iterations: 1}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
seed: 3
"""


def tiny_grid(store, name="tiny", discretizations="all", epochs=2, bohb="false") -> str:
    return TINY_GRID.format(name=name, store=store.path, discretizations=discretizations, epochs=epochs, bohb=bohb)


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
