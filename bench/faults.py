"""A seeded fault schedule over the whole service (issue 16 item 1): kills by pid while smoke jobs run.

A head and two worker nodes with a fake GPU each (deploy/local-cluster.sh, every node its own
`ray start` process tree), `adf-service serve` over a private PostgreSQL server (the system's
binaries), results on a directory standing in for shared storage. Smoke jobs go in over REST, at
least one running at every kill. The schedule, from ``--seed``: each kind once in a fixed order
first (the chosen points), then kinds drawn at random, each after a random delay:

- ``trial_worker``: a trial's actor process on a worker node (Tune restores the trial from its checkpoint);
- ``worker_raylet``: a worker node's raylet (the node dies; a new worker node takes its place);
- ``driver``: a job's driver (`run-job`) on the head (the service resumes the job by itself);
- ``ray_head``: every process of the head node; the workers are stopped and a new cluster starts on
  the same ports (the service resumes its jobs from their checkpoints);
- ``api_server``: `adf-service serve` (SIGKILL), then started again over the same store;
- ``postgres``: the database server (SIGKILL), down two seconds, then started again under the running service.

After the last kill every job must end `succeeded`; then :func:`bench.fault_checks.check` compares, for every job,
the service's rows with its Parquet tables (every trial exactly once, nothing from a killed
attempt), checks the job store's integrity and that the usage accounting counts lost work.

    python bench/faults.py [--kills 40] [--seed 1]     # the test runs 20 (tests/cluster/test_fault_schedule.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.cluster import ClusterUnavailable, ClusterView  # noqa: E402
from api.testing import LiveService  # noqa: E402
from bench.fault_checks import KINDS, Kill, Report, check  # noqa: E402
from tests.helpers.local_cluster import free_port, local_cluster_run, recorded, session_members  # noqa: E402
from tests.helpers.postgres import PostgresServer, kill_and_restart, throwaway_server  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")
GRID = """
name: faults-{n}
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all, topk], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 200, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 60, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb], [rgb, flow, pose]], repeats: 1, training: {{epochs: 150, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 1, cpus_per_trial: 1}}
seed: {n}
"""
EXPECTED = {"baselines": 2, "search": 2, "evaluation": 2}  # rows per job of GRID


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def sigkill(pid: int) -> bool:
    """SIGKILL ``pid``; False when it had already ended (a process found a moment ago may have)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def members_matching(session: int, match: Callable[[list[bytes]], bool]) -> list[int]:
    return [pid for pid in session_members(session) if (args := cmdline(pid)) and match(args)]


class Schedule:
    """The cluster, the service and the jobs of one fault run; :meth:`run` kills, :func:`check` judges."""

    def __init__(self, root: Path, store: Path, postgres: PostgresServer, cluster, *, seed: int):
        self.root, self.store, self.postgres, self.cluster = root, store, postgres, cluster
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.shared = root / "shared-storage"
        self.shared.mkdir()
        self.submitted = 0
        self.began = time.time()
        self.service: LiveService | None = None

    # --- the cluster and the service ------------------------------------------------------------------

    def start_cluster(self) -> None:
        started = self.cluster("start", "--workers", "2", "--gpus-per-worker", "1", "--cpus-per-worker", "1",
                               "--head-cpus", "1", "--port", str(self.gcs_port), "--dashboard-port",
                               str(self.dashboard_port), "--object-store-mb", "100")
        assert started.returncode == 0, started.stdout + started.stderr

    def start_service(self) -> None:
        database = self.postgres.create_database()
        env = {"ADF_DATABASE_URL": self.postgres.url(database), "ADF_DATA_ROOTS": json.dumps([str(self.store.parent)]),
               "ADF_STORAGE": str(self.shared), "RAY_AUTH_MODE": "disabled", "ADF_AUTO_RESUME_ATTEMPTS": "100",
               "ADF_AUTO_RESUME_BACKOFF_SECONDS": "1"}
        (self.root / "service").mkdir()
        self.service = LiveService(self.root / "service", f"http://127.0.0.1:{self.dashboard_port}", env_extra=env)
        self.service.start()
        self.client = self.service.client(self.service.token("alice"))
        self.database = database

    def gpu_nodes_alive(self) -> int:
        try:
            nodes = ClusterView(f"http://127.0.0.1:{self.dashboard_port}", cache_seconds=0).nodes()
        except ClusterUnavailable:
            return 0
        return sum(1 for node in nodes if node.alive and node.total.get("GPU", 0) >= 1)

    def wait_recovered(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                healthy = httpx.get(f"{self.service.url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and self.gpu_nodes_alive() >= 2:
                return
            time.sleep(0.5)
        raise TimeoutError(f"not recovered within {timeout} s (service or 2 GPU nodes)")

    # --- jobs -------------------------------------------------------------------------------------------

    def submit(self) -> str:
        self.submitted += 1
        answer = self._retry(lambda: self.client.post(
            "/v1/jobs", content=GRID.format(n=self.submitted, store=self.store),
            headers={"Content-Type": "application/yaml", "Idempotency-Key": f"faults-{self.submitted}"}))
        assert answer.status_code in (200, 201, 202), answer.text
        job_id = answer.json()["id"]
        self.report.jobs[job_id] = "queued"
        return job_id

    def statuses(self) -> dict[str, dict]:
        return {job_id: self._retry(lambda j=job_id: self.client.get(f"/v1/jobs/{j}")).json()
                for job_id in self.report.jobs}

    def running_job(self, timeout: float = 300) -> str:
        """A job with a running trial; jobs are submitted so that two are active (the trials of a job
        last tens of seconds, so that each job meets several kills)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            jobs = self.statuses()
            if sum(j["status"] in ("queued", "running") for j in jobs.values()) < 2:
                self.submit()
                continue
            for job_id, job in jobs.items():
                running = sum(s.get("running", 0) for s in (job.get("progress") or {}).values())
                if job["status"] == "running" and running:
                    return job_id
            time.sleep(0.5)
        raise TimeoutError("no job ran a trial within the timeout")

    def _retry(self, call: Callable[[], httpx.Response], timeout: float = 120) -> httpx.Response:
        """A request again until it is answered without a 5xx (the server or its database may be down)."""
        deadline = time.time() + timeout
        while True:
            try:
                answer = call()
                if answer.status_code < 500:
                    return answer
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError("the service did not answer without a 5xx in time")
            time.sleep(0.5)

    def results(self, job_id: str) -> list[dict]:
        """The job's result rows through the API."""
        return self._retry(lambda: self.client.get(f"/v1/jobs/{job_id}/results")).json()

    # --- kills ------------------------------------------------------------------------------------------

    def nodes(self) -> dict[str, int]:
        return {role: pid for role, pid in recorded(self.cluster.state).items() if session_members(pid)}

    def driver_pid(self, job_id: str) -> int | None:
        """The pid of the job's Ray driver, as Ray's Jobs API reports it (it runs in a session of its own)."""
        ray_job_id = self._retry(lambda: self.client.get(f"/v1/jobs/{job_id}")).json().get("ray_job_id")
        if not ray_job_id:
            return None
        try:
            info = httpx.get(f"http://127.0.0.1:{self.dashboard_port}/api/jobs/{ray_job_id}", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return None
        pid = (info.get("driver_info") or {}).get("pid")
        return int(pid) if pid and info.get("status") == "RUNNING" and Path(f"/proc/{pid}").exists() else None

    def kill(self, kind: str, job_id: str) -> tuple[int, str] | None:
        nodes = self.nodes()
        workers = [pid for role, pid in nodes.items() if role.startswith("worker")]
        if kind == "trial_worker":  # a running job's trial actor may still be starting: wait for one
            deadline, actors = time.time() + 60, []
            while not actors and time.time() < deadline:
                actors = [p for w in self.nodes().items() if w[0].startswith("worker")
                          for p in members_matching(w[1], lambda a: a[0].startswith(b"ray::StageTrainable"))]
                time.sleep(0.2)
            if not actors:
                return None
            victim = self.rng.choice(actors)
            if not sigkill(victim):
                return None
            return victim, "a trial's actor process"
        if kind == "worker_raylet":
            node = self.rng.choice(workers)
            raylets = members_matching(node, lambda a: a[0].endswith(b"raylet"))
            if not raylets:
                return None
            if not sigkill(raylets[0]):
                return None
            for pid in session_members(node):  # what the dead node leaves, by its own pids
                sigkill(pid)
            added = self.cluster("add-worker", "--gpus-per-worker", "1", "--cpus-per-worker", "1")
            assert added.returncode == 0, added.stdout + added.stderr
            return raylets[0], "a worker node's raylet (a new worker node replaced it)"
        if kind == "driver":
            pid = self.driver_pid(job_id)
            if pid is None:
                return None
            if not sigkill(pid):
                return None
            return pid, f"the driver of job {job_id}"
        if kind == "ray_head":
            head = nodes["head"]
            for pid in session_members(head):
                sigkill(pid)
            self.cluster("stop", "--stop-wait", "10", timeout=180)  # workers without their head: no waiting
            self.start_cluster()
            return head, "every process of the Ray head (a new cluster started on its ports)"
        if kind == "api_server":
            pid = self.service.process.pid
            self.service.kill()
            self.service.start()
            return pid, "adf-service serve (started again)"
        if kind == "postgres":
            return kill_and_restart(self.postgres), "the PostgreSQL server (started again)"
        raise ValueError(kind)

    def run(self, kills: int) -> Report:
        kinds = [*KINDS, *(self.rng.choice(KINDS) for _ in range(max(0, kills - len(KINDS))))][:kills]
        done = 0
        while done < kills:
            kind = kinds[done]
            job_id = self.running_job()
            time.sleep(self.rng.uniform(0.0, 3.0))  # a random point of the running job
            killed = self.kill(kind, job_id)
            if killed is None:  # e.g. no trial running at this moment: another kind takes the turn
                self.report.skipped[kind] += 1
                if sum(self.report.skipped.values()) > 100:
                    raise RuntimeError(f"nothing to kill 100 times: {dict(self.report.skipped)}")
                kinds[done] = self.rng.choice(KINDS)
                continue
            pid, what = killed
            kill = Kill(kind, pid, what, round(time.time() - self.began, 1))
            began = time.time()
            self.wait_recovered()
            kill.recovered_s = round(time.time() - began, 1)
            self.report.kills.append(kill)
            print(f"[{kill.at:7.1f} s] kill {done + 1}/{kills}: {kind} pid {pid} ({what}); recovered in "
                  f"{kill.recovered_s} s", flush=True)
            done += 1
        self.wait_final()
        check(self.report, EXPECTED, self.results, self.shared, self.postgres.conninfo(self.database))
        return self.report

    def wait_final(self, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while True:
            jobs = self.statuses()
            if all(j["status"] in FINAL for j in jobs.values()):
                self.report.jobs = {job_id: j["status"] for job_id, j in jobs.items()}
                self.report.errors = {job_id: j.get("error") for job_id, j in jobs.items() if j["status"] != "succeeded"}
                return
            if time.time() > deadline:
                waiting = {k: (j["status"], j.get("queue_reason"), j.get("notice"),
                               {s: (p.get("running"), p.get("pending")) for s, p in (j.get("progress") or {}).items()})
                           for k, j in jobs.items() if j["status"] not in FINAL}
                raise TimeoutError(f"jobs not final after {timeout} s: {waiting}")
            time.sleep(1)


def run_schedule(root: Path, store: Path, postgres: PostgresServer, *, kills: int, seed: int,
                 keep_logs: bool = False) -> Report:
    """``keep_logs``: every node's Ray session logs (the drivers' among them) go to ``root/ray-logs``."""
    with local_cluster_run(root, keep_logs=root / "ray-logs" if keep_logs else None) as cluster:
        run = Schedule(root, store, postgres, cluster, seed=seed)
        run.start_cluster()
        run.start_service()
        try:
            run.submit()
            run.submit()
            return run.run(kills)
        finally:
            run.service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="run under this directory and keep it (tables, Tune state, the "
                                                "service's log, every node's Ray logs in ray-logs/)")
    args = parser.parse_args()
    from adf_service.features import generate_synthetic_store

    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(throwaway_server("system"))
        if args.keep:
            root = args.keep
            root.mkdir(parents=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="adf-faults-")))
        store = root / "data" / "store"
        generate_synthetic_store(store, n_train=48, n_test=24, n_classes=3, seed=4, channels=(8, 8, 4), spatial=(2, 4, 4))
        report = run_schedule(root, store, postgres, kills=args.kills, seed=args.seed, keep_logs=bool(args.keep))
    print(report.table())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
