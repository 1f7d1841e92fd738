"""REST latency: result pages and job submissions under concurrent clients.

`adf-service serve` runs as its own process on 127.0.0.1 (a real socket, SQLite store);
the clients are aiohttp tasks on uvloop in this process (a lighter load generator than
httpx: it leaves the server more of the 2 cores), each sending its next request when its
last one is answered. Measured, side by side in one run:

- ``GET /v1/jobs/{id}/trials?limit=100&offset=…`` at random offsets, on a job with 10,000
  imported result rows; and the same with ``stage=search`` (target p99 < 100 ms): on a
  finished job and on a running one (e.g. resumed, with its earlier rows); the rows come
  from the server's memory either way (api/pages.py);
- ``POST /v1/jobs`` with a small grid whose store does not exist, against a local Ray
  whose Jobs API takes the job (its driver fails at once): store + Ray submission;
- ``POST /v1/jobs`` against a second server whose Ray address refuses connections: the
  submission fails at once and the job is stored as failed, so this is the store's share.

Each workload runs at concurrency 1 too, to tell the cost of a request from the wait for
one; "server CPU / request" is the server process's CPU time over the requests (Linux).

    python bench/api.py [--rows 10000] [--concurrency 50] [--reads 2000] [--posts 300] [--ray-posts 50]

(``--posts 0 --ray-posts 0``: reads only.) Submissions and reads at once on PostgreSQL, with
client retries, lost or duplicated jobs and the server's memory checked: bench/api_load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop

# Run as a script, this file's directory comes first on sys.path, and its name would
# shadow the `api` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from api.auth import create_user, issue_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import create_job, replace_trials, set_status
from api.models import Job
from api.ports import free_port
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID, LiveService
from trials.results import RESULT_SCHEMA

STAGE_SHARES = {"baselines": 0.04, "search": 0.40, "evaluation": 0.40, "random": 0.14, "bohb": 0.02}
GRID = UNRUNNABLE_GRID | {"name": "bench"}  # 2 trials; the store has no features, so the Ray job's driver fails at once


def result_rows(job_id: str, n: int, rng: random.Random) -> list[dict]:
    """``n`` RESULT_SCHEMA rows spread over the stages, with genotype and config JSON of real size."""
    genotype = json.dumps({"format": "adf-genotype/1", "operators": "S2", "n_inputs": 2, "discretization": "all",
                           "cells": [[[[i, "sep_conv_3x3x3"] for i in range(2 + j)] for j in range(4)]] * 2})
    config = json.dumps({"search": {"epochs": 50, "batch_size": 64, "lr": 2e-3, "momentum": 0.9},
                         "evaluation": {"epochs": 70, "batch_size": 64, "lr": 2e-3, "optimizer": "SGD"},
                         "space": {"channels": 512, "partial_k": 4}, "seed": 1234, "padding": "x" * 600})
    rows, i = [], 0
    for stage, share in STAGE_SHARES.items():
        for k in range(round(n * share)):
            i += 1
            ops, disc = rng.choice(["S1", "S2"]), rng.choice(["all", "topk"])
            rows.append(dict.fromkeys(RESULT_SCHEMA.names) | {
                "job": job_id, "stage": stage, "trial_id": f"{i:05x}_{k:05d}", "trial_key": f"{stage}-{k}",
                "operators": ops, "discretization": disc, "n_inputs": rng.randint(1, 3), "n_cells": rng.randint(1, 4),
                "repeat": k % 6, "seed": rng.getrandbits(31), "best_epoch": rng.randint(0, 69),
                "val_loss": rng.random(), "val_top1": 100 * rng.random(), "test_top1": 100 * rng.random(),
                "fusion_params": rng.randint(10**6, 10**8), "total_params": rng.randint(10**8, 2 * 10**8),
                "genotype": None if stage == "baselines" else genotype, "config": config,
                "wall_seconds": 3600 * rng.random(), "device": "node-3 cuda:0 bf16", "status": "succeeded",
            })
    return rows


def seed_store(data_dir: Path, n_rows: int, database_url: str | None = None,
               statuses: tuple[str, ...] = ("succeeded", "running")) -> tuple[str, dict[str, str], int]:
    """A store (SQLite under ``data_dir``, or ``database_url``) with one user and a job of ``n_rows``
    trials per status, by default one finished and one running (no Ray job, so the reconciler
    leaves it be): (token, {status: job id}, search rows)."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    jobs = {}
    with make_sessionmaker(engine)() as s:
        user = create_user(s, "bench")
        token = issue_token(s, user)
        for status in statuses:
            job, _ = create_job(s, owner=user, name=status, spec_json=json.dumps(GRID), request_hash=status,
                                n_trials=n_rows, storage_root=settings.storage_dir)
            set_status(s, job, "running")
            rows = result_rows(job.id, n_rows, random.Random(0))
            replace_trials(s, s.get(Job, job.id), rows)
            if status == "succeeded":
                set_status(s, job, "succeeded")
            jobs[status] = job.id
    engine.dispose()
    return token, jobs, sum(r["stage"] == "search" for r in rows)


class Server(LiveService):
    """``adf-service serve`` in its own process (api/testing.py), plus its CPU time."""

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    endpoint: str
    latencies: list[float]  # seconds
    concurrency: int
    wall: float
    statuses: set[int]
    server_cpu: float  # seconds of server CPU per request

    def percentile(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q) - 1]

    def row(self) -> str:
        p50, p99 = 1000 * self.percentile(50), 1000 * self.percentile(99)
        return (f"| {self.endpoint} | {len(self.latencies):,} | {self.concurrency} | {p50:.1f} ms | {p99:.1f} ms | "
                f"{len(self.latencies) / self.wall:,.0f} req/s | {1000 * self.server_cpu:.1f} ms | "
                f"{','.join(map(str, sorted(self.statuses)))} |")


async def measure(endpoint: str, server: Server, token: str, send: Callable, n: int, concurrency: int) -> Result:
    """``n`` requests from ``concurrency`` clients, each waiting for its answer before the next."""
    latencies: list[float] = []
    statuses: set[int] = set()
    todo = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {token}"}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as client:
        async def one(request: Callable = send) -> int:
            async with request(client) as response:
                await response.read()
                return response.status

        # Warm-up, not measured: a few of the workload's own requests fill the server's caches,
        # then every client opens its keep-alive connection with a cheap read (opening 50 at
        # once takes the server about 0.6 s); no extra submissions, so no extra Ray jobs.
        for _ in range(3):
            await one()
        for _ in range(2):
            await asyncio.gather(*(one(lambda c: c.get("/v1/jobs", params={"limit": 1}))
                                   for _ in range(concurrency)))

        async def worker() -> None:
            for _ in todo:
                started = time.perf_counter()
                status = await one()
                latencies.append(time.perf_counter() - started)
                statuses.add(status)

        cpu, started = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
    return Result(endpoint, latencies, concurrency, wall, statuses, cpu / n)


def start_ray() -> tuple[object, str]:
    """A local Ray head with its dashboard (the Jobs API); its agent on a free port, not 52365."""
    from ray.cluster_utils import Cluster

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
        "dashboard_agent_listen_port": free_port(),
    })
    return cluster, f"http://127.0.0.1:{port}"


async def run(args: argparse.Namespace, root: Path, token: str, jobs: dict[str, str], n_search: int,
              ray_address: str) -> list:
    rng = random.Random(1)

    def page(job: str, stage: str | None, total: int) -> Callable:
        params = {"limit": 100} | ({"stage": stage} if stage else {})
        return lambda c: c.get(f"/v1/jobs/{job}/trials", params=params | {"offset": rng.randrange(total - 99)})

    def submit(c: aiohttp.ClientSession):
        return c.post("/v1/jobs", json=GRID)

    finished, running = jobs["succeeded"], jobs["running"]
    reads = {"GET …/trials?limit=100&offset=random, finished job": page(finished, None, args.rows),
             "GET …/trials?stage=search&limit=100&offset=random, finished job": page(finished, "search", n_search),
             "GET …/trials?limit=100&offset=random, running job": page(running, None, args.rows),
             "GET …/trials?stage=search&limit=100&offset=random, running job":
                 page(running, "search", n_search)}
    results = []
    no_cap = {"ADF_MAX_RUNNING_JOBS_PER_USER": "1000000"}
    server = Server(root, ray_address, env_extra=no_cap).start()
    refused = Server(root, f"http://127.0.0.1:{free_port()}", env_extra=no_cap).start()  # nothing listens there
    try:
        for name, send in reads.items():
            results.append(await measure(name, server, token, send, args.reads // 4, 1))
            results.append(await measure(name, server, token, send, args.reads, args.concurrency))
        for concurrency, n in ((1, args.posts // 4), (args.concurrency, args.posts)) if args.posts else ():
            results.append(await measure("POST /v1/jobs (store only: Ray refuses at once)", refused, token, submit,
                                         n, concurrency))
        # Last: every accepted job starts a Ray job whose driver then competes for the cores.
        for concurrency, n in ((1, 10), (args.concurrency, args.ray_posts)) if args.ray_posts else ():
            results.append(await measure("POST /v1/jobs (store + Ray Jobs API submit)", server, token, submit,
                                         n, concurrency))
    finally:
        server.stop()
        refused.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reads", type=int, default=2000, help="requests per read workload at full concurrency")
    parser.add_argument("--posts", type=int, default=300, help="store-only submissions")
    parser.add_argument("--ray-posts", type=int, default=50, help="submissions that start a Ray job each")
    args = parser.parse_args()

    import ray

    cluster, ray_address = start_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            token, jobs, n_search = seed_store(root, args.rows)
            results = uvloop.run(run(args, root, token, jobs, n_search, ray_address))
    finally:
        cluster.shutdown()
    print(f"# bench/api.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  {os.cpu_count()} cores  "
          f"python {platform.python_version()}  ray {ray.__version__}  SQLite; {args.rows:,} trial rows "
          f"({n_search:,} search)")
    print("| endpoint | requests | concurrency | p50 | p99 | throughput | server CPU / request | statuses |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
