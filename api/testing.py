"""The service as a separate process, for tests and benchmarks (tests/api/, bench/api.py).

``adf-service serve`` as a real uvicorn server on 127.0.0.1 in its own process, over its own
data directory, which a caller may kill (by its pid) and start again over the same data; and
a grid the service accepts but cannot run, with its store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.ports import free_port

__all__ = ["ADF", "UNRUNNABLE_GRID", "UNRUNNABLE_STORE", "LiveService", "unrunnable_store"]

ADF = str(Path(sys.executable).with_name("adf-service"))  # the console script of this environment

UNRUNNABLE_STORE = "unrunnable-store"  # under the service's data_dir: see unrunnable_store()

# A grid the service accepts (2 trials) but cannot run: its feature store has a manifest but
# no features.arrow, so its Ray job's driver fails at once. For tests and benchmarks of the API alone.
UNRUNNABLE_GRID = {
    "name": "tiny", "dataset": {"store": UNRUNNABLE_STORE}, "repeats": 1,
    "space": {"operators": ["S2"], "discretizations": ["all"], "inputs": [1], "cells": [1], "channels": 8},
    "baselines": {"combos": [["rgb"]], "repeats": 1}, "random": {"enabled": False}, "bohb": {"enabled": False},
    "resources": {"gpus_per_trial": 0, "cpus_per_trial": 1},
}


def unrunnable_store(data_dir: Path) -> Path:
    """The store UNRUNNABLE_GRID names, under ``data_dir``: a manifest the service checks at submit
    (modalities rgb, flow, pose), its features.arrow deleted so that the job's driver fails."""
    from adf_service.features.manifest import FEATURES_FILE
    from adf_service.features.synth import generate_synthetic_store

    store = data_dir / UNRUNNABLE_STORE
    if not store.exists():
        generate_synthetic_store(store, n_train=5, n_test=2, n_classes=2, n_train_views=1)
        (store / FEATURES_FILE).unlink()
    return store


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
        unrunnable_store(self.data_dir)
        log = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen([ADF, "serve", "--port", str(self.port)], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                log_tail = (self.data_dir / "server.log").read_text()[-3000:]
                raise RuntimeError(f"`adf-service serve` exited with {self.process.returncode}:\n{log_tail}")
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
