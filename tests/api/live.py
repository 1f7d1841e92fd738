"""A live service for tests: a real local Ray with its dashboard (the Jobs API), and
``adf-service serve`` as a real uvicorn server on 127.0.0.1 in its own process, which a
test may kill (by its pid) and start again over the same data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.ports import free_port

ADF = str(Path(sys.executable).with_name("adf-service"))

TINY_GRID = """
name: {name}
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [{discretizations}], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: {epochs}, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: {bohb}, samples: 3, min_epochs: 1, max_epochs: 3, eta: 3, iterations: 1}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
seed: 3
"""

# A grid the service accepts (2 trials) but cannot run: its feature store does not exist, so
# its Ray job's driver fails at once. For tests and benchmarks of the API alone.
UNRUNNABLE_GRID = {
    "name": "tiny", "dataset": {"store": "no-such-store"}, "repeats": 1,
    "space": {"operators": ["S2"], "discretizations": ["all"], "inputs": [1], "cells": [1], "channels": 8},
    "baselines": {"combos": [["rgb"]], "repeats": 1}, "random": {"enabled": False}, "bohb": {"enabled": False},
    "resources": {"gpus_per_trial": 0, "cpus_per_trial": 1},
}


def tiny_grid(store, name="tiny", discretizations="all", epochs=2, bohb="false") -> str:
    return TINY_GRID.format(name=name, store=store.path, discretizations=discretizations, epochs=epochs, bohb=bohb)


@dataclass
class LiveService:
    """One server process over ``data_dir``; ``url`` answers while it runs."""

    data_dir: Path
    ray_address: str | None  # None: the server starts (or reuses) a local Ray head
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "ADF_RAY_ADDRESS"}
        ray = {"ADF_RAY_ADDRESS": self.ray_address} if self.ray_address else {}
        return {**env, "ADF_DATA_DIR": str(self.data_dir), **ray, **self.env_extra}

    def start(self, timeout: float = 60) -> LiveService:
        log = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen([ADF, "serve", "--port", str(self.port)], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, (self.data_dir / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not answer in {timeout} s")

    def kill(self) -> None:
        """Kill the server process by its pid (SIGKILL: no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, user: str, admin: bool = False) -> str:
        command = [ADF, "token", "create", "--user", user] + (["--admin"] if admin else [])
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
