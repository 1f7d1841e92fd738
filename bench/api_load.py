"""REST under load on PostgreSQL: job submissions with client retries while result pages are read.

A private PostgreSQL server (tests/helpers/postgres.py) holds the job store; `adf-service serve`
runs over it as its own process on 127.0.0.1, with a Ray address where nothing listens, so every
accepted job stays ``queued`` (api/service.py schedule(): the queue finds no cluster) and no Ray
runs. One job with ``--rows`` imported result rows is in the store. Then, at once:

- ``--writers`` clients submit ``--jobs`` grids in all (``POST /v1/jobs``), each with its own
  ``Idempotency-Key``; every try of a submission sends the same key. A client retries on a 5xx,
  a timeout (``--timeout``) or a dropped connection, and ``--retry-share`` of the submissions are
  sent twice on purpose: half of them a second time while the first is in flight (a client that
  gave up too early), half once the first is answered (an answer lost on the way back);
- ``--readers`` clients read random pages of the imported job (``GET /v1/jobs/{id}/trials``,
  ``--page`` rows at a random offset), until the writers are done.

Before it, not timed: the job's rows are read once (into the server's memory), and every client
sends ``GET /v1/jobs?limit=1``, all at once (writers + readers requests that each need a store
connection). Measured: the status of every answer (no 5xx allowed), the jobs in the store afterwards
against the keys sent (none lost, none duplicated, every answer for a key naming the same job;
counted in the store and by ``GET /v1/jobs``), read and submit p50/p99 under load, and the server
process's RSS (``/proc/<pid>/status``) before the load, at its peak during it (every 100 ms) and
1 s after it. Exits 1 on a 5xx, a request unanswered within ``--timeout`` or a dropped connection,
a lost or duplicated job, an answer naming another job, or RSS after > 1.5 × before + 50 MiB.

    python bench/api_load.py [--rows 10000] [--jobs 200] [--writers 50] [--readers 50] [--retry-share 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ must not shadow the `api` package, the root must be there
    _ROOT = Path(__file__).resolve().parent.parent
    sys.path[:] = [str(_ROOT), *(p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench")]

import aiohttp
import uvloop
from sqlalchemy import func, select

from api.db import make_engine
from api.models import Job
from api.ports import free_port
from bench.api import GRID, Server, seed_store
from tests.helpers.postgres import PG_ENV, PostgresServer, throwaway_server

__all__ = ["MIB", "LoadConfig", "LoadReport", "rss_bytes", "run_load"]

MIB = 2**20
MAX_TRIES = 8  # tries of one submission (5xx, timeout, dropped connection) before the client gives up
RSS_EVERY = 0.1  # seconds between samples of the server's RSS


@dataclass(frozen=True)
class LoadConfig:
    """The load: its sizes, client timeout and seed (the defaults are the issue's full configuration)."""

    rows: int = 10_000  # result rows of the job the readers page through
    jobs: int = 200  # distinct submissions (idempotency keys)
    writers: int = 50
    readers: int = 50
    retry_share: float = 0.25  # submissions sent twice on purpose, same key
    page: int = 100  # rows per page read
    timeout: float = 30.0  # seconds a client waits for an answer before it retries
    seed: int = 1


@dataclass
class LoadReport:
    """What one run measured; :meth:`failures` says what broke the bench's promises."""

    config: LoadConfig
    statuses: Counter = field(default_factory=Counter)  # (kind "submit"/"read"/"list", HTTP status) -> answers
    transport_errors: Counter = field(default_factory=Counter)  # kind -> timeouts and dropped connections
    answers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # key -> job ids answered
    replayed: int = 0  # answers with Idempotent-Replayed: true
    deliberate: int = 0  # submissions sent twice on purpose
    submit_latencies: list[float] = field(default_factory=list)  # seconds
    read_latencies: list[float] = field(default_factory=list)
    wall: float = 0.0  # seconds of load
    stored: Counter = field(default_factory=Counter)  # key -> jobs in the store with it
    stored_statuses: Counter = field(default_factory=Counter)
    listed: int | None = None  # jobs GET /v1/jobs counts, the imported one included
    rss_before: int = 0  # bytes
    rss_peak: int = 0
    rss_after: int = 0
    rss_samples: int = 0  # taken during the load

    @property
    def keys(self) -> set[str]:
        """The idempotency keys sent, each once."""
        return set(self.answers)

    def server_errors(self) -> int:
        """Answers with a 5xx status, of every kind."""
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def lost(self) -> set[str]:
        """Keys sent that no job in the store carries."""
        return {key for key in self.keys if not self.stored.get(key)}

    def duplicated(self) -> int:
        """Jobs in the store beyond one per key."""
        return sum(n - 1 for n in self.stored.values() if n > 1)

    def rss_limit(self) -> int:
        """The most RSS the server may keep after the load: 1.5 × before + 50 MiB (bytes)."""
        return int(1.5 * self.rss_before) + 50 * MIB

    def failures(self) -> list[str]:
        """Each broken promise in a sentence; empty when the run held."""
        failed = []
        if self.server_errors():
            failed.append(f"{self.server_errors()} answers were 5xx")
        if unanswered := sum(self.transport_errors.values()):
            failed.append(f"{unanswered} requests timed out ({self.config.timeout:g} s) or lost their connection")
        if self.lost():
            failed.append(f"{len(self.lost())} keys have no job in the store, e.g. {sorted(self.lost())[0]}")
        if self.duplicated():
            failed.append(f"{self.duplicated()} jobs more than keys (a key stored twice)")
        if unknown := set(self.stored) - self.keys:
            failed.append(f"{len(unknown)} jobs in the store with keys never sent")
        if split := [k for k, ids in self.answers.items() if len(ids) > 1]:
            failed.append(f"{len(split)} keys answered with more than one job id, e.g. {split[0]}")
        if self.listed != len(self.keys) + 1:
            failed.append(f"GET /v1/jobs counts {self.listed} jobs, expected {len(self.keys) + 1} (keys + imported)")
        if self.rss_after > self.rss_limit():
            failed.append(f"server RSS after {self.rss_after / MIB:.0f} MiB > 1.5 × before + 50 MiB "
                          f"= {self.rss_limit() / MIB:.0f} MiB")
        return failed

    def table(self) -> str:
        """The figures as a Markdown table, one measure a row."""
        c = self.config
        reads, submits = len(self.read_latencies), len(self.submit_latencies)
        rows = [
            ("load", f"{c.jobs} submissions from {c.writers} clients + {c.readers} clients reading "
                     f"{c.page}-row pages of a {c.rows:,}-row job, {self.wall:.1f} s"),
            ("read p50 / p99", f"{_ms(self.read_latencies, 50)} / {_ms(self.read_latencies, 99)} "
                               f"({reads:,} pages, {reads / self.wall:,.0f} req/s)"),
            ("submit p50 / p99", f"{_ms(self.submit_latencies, 50)} / {_ms(self.submit_latencies, 99)} "
                                 f"({submits:,} requests, retries included)"),
            ("statuses", ", ".join(f"{kind} {status}: {n:,}" for (kind, status), n in sorted(self.statuses.items()))),
            ("5xx", str(self.server_errors())),
            ("timeouts, dropped connections", ", ".join(f"{k} {n}" for k, n in sorted(self.transport_errors.items()))
             or "0"),
            ("keys / sent twice on purpose / replayed answers", f"{len(self.keys)} / {self.deliberate} / {self.replayed}"),
            ("jobs stored with a key / lost / duplicated",
             f"{sum(self.stored.values())} / {len(self.lost())} / {self.duplicated()}"),
            ("their statuses", ", ".join(f"{s} {n}" for s, n in sorted(self.stored_statuses.items()))),
            ("GET /v1/jobs total", f"{self.listed} (keys + the imported job)"),
            ("server RSS before / peak / after", f"{self.rss_before / MIB:.0f} / {self.rss_peak / MIB:.0f} / "
                                                 f"{self.rss_after / MIB:.0f} MiB (limit after: "
                                                 f"{self.rss_limit() / MIB:.0f} MiB; {self.rss_samples} samples)"),
        ]
        return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _ms(latencies: list[float], q: int) -> str:
    if len(latencies) < 2:
        return "n/a"
    return f"{1000 * statistics.quantiles(latencies, n=100, method='inclusive')[q - 1]:.1f} ms"


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux: VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"/proc/{pid}/status has no VmRSS line")


class RssPeak:
    """The peak RSS of a process, sampled every RSS_EVERY seconds in a thread (not on the busy event loop)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.samples = pid, 0, 0  # bytes, count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_EVERY):
            self.peak, self.samples = max(self.peak, rss_bytes(self.pid)), self.samples + 1

    def __enter__(self) -> RssPeak:
        self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _post(client: aiohttp.ClientSession, body: dict, key: str, report: LoadReport) -> None:
    """One submission until it is answered below 500, every try with ``key``; the answered job id is noted."""
    for attempt in range(MAX_TRIES):
        started = time.perf_counter()
        try:
            async with client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}) as response:
                payload = await response.json(content_type=None)
                status = response.status
                replayed = response.headers.get("Idempotent-Replayed") == "true"
        except (aiohttp.ClientError, asyncio.TimeoutError):
            report.transport_errors["submit"] += 1
        else:
            report.submit_latencies.append(time.perf_counter() - started)
            report.statuses["submit", status] += 1
            if status == 202:
                report.answers[key].add(payload["id"])
                report.replayed += replayed
                return
            if status < 500:  # refused (4xx): the key stays without a job, which the store count shows
                report.answers.setdefault(key, set())
                return
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    report.answers.setdefault(key, set())  # given up: lost, unless a try the client gave up on made it


async def _writer(client: aiohttp.ClientSession, todo: list[int], report: LoadReport, rng: random.Random) -> None:
    while todo:
        i = todo.pop()
        body, key = GRID | {"name": f"load-{i:04d}"}, f"bench-load-{i:04d}"
        if rng.random() >= report.config.retry_share:
            await _post(client, body, key, report)
            continue
        report.deliberate += 1
        if i % 2:  # the client gave up on its first try too early: both in flight at once
            await asyncio.gather(_post(client, body, key, report), _post(client, body, key, report))
        else:  # the first answer was lost on its way back
            await _post(client, body, key, report)
            await _post(client, body, key, report)


async def _reader(client: aiohttp.ClientSession, job_id: str, report: LoadReport, rng: random.Random,
                  done: asyncio.Event) -> None:
    c = report.config
    while not done.is_set():
        params = {"limit": c.page, "offset": rng.randrange(max(1, c.rows - c.page + 1))}
        started = time.perf_counter()
        try:
            async with client.get(f"/v1/jobs/{job_id}/trials", params=params) as response:
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            report.transport_errors["read"] += 1
            continue
        report.read_latencies.append(time.perf_counter() - started)
        report.statuses["read", response.status] += 1


async def _list_jobs(client: aiohttp.ClientSession, report: LoadReport) -> int | None:
    """``GET /v1/jobs?limit=1``, its status counted: the jobs' total, None unless answered 200."""
    try:
        async with client.get("/v1/jobs", params={"limit": 1}) as response:
            report.statuses["list", response.status] += 1
            return (await response.json(content_type=None))["total"] if response.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        report.transport_errors["list"] += 1
        return None


async def _load(server: Server, token: str, job_id: str, report: LoadReport) -> None:
    """Warm up, then writers and readers at once; RSS before, at its peak during, and after."""
    c, pid = report.config, server.process.pid
    rng = random.Random(c.seed)
    connector = aiohttp.TCPConnector(limit=2 * c.writers + c.readers)  # a duplicate in flight has its own
    async with aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {token}"}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=c.timeout)) as client:
        # Not measured: the job's rows into the server's memory, and a keep-alive connection per client.
        async with client.get(f"/v1/jobs/{job_id}/trials", params={"limit": c.page}) as response:
            await response.read()
            report.statuses["read", response.status] += 1
        await asyncio.gather(*(_list_jobs(client, report) for _ in range(c.writers + c.readers)))
        await asyncio.sleep(1.0)
        report.rss_before = rss_bytes(pid)
        todo, done = list(range(c.jobs))[::-1], asyncio.Event()
        with RssPeak(pid) as peak:
            started = time.perf_counter()
            readers = [asyncio.create_task(_reader(client, job_id, report, random.Random(rng.random()), done))
                       for _ in range(c.readers)]
            await asyncio.gather(*(_writer(client, todo, report, random.Random(rng.random())) for _ in range(c.writers)))
            done.set()
            await asyncio.gather(*readers)
            report.wall = time.perf_counter() - started
        report.rss_peak, report.rss_samples = peak.peak, peak.samples
        report.listed = await _list_jobs(client, report)
    await asyncio.sleep(1.0)  # the closed connections' buffers are freed
    report.rss_after = rss_bytes(pid)


def _count_stored(database_url: str, report: LoadReport) -> None:
    """The store's jobs made with an idempotency key, counted per key and per status, read directly."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            keyed = Job.idempotency_key.is_not(None)
            report.stored = Counter(dict(conn.execute(
                select(Job.idempotency_key, func.count()).where(keyed).group_by(Job.idempotency_key)).all()))
            report.stored_statuses = Counter(dict(conn.execute(
                select(Job.status, func.count()).where(keyed).group_by(Job.status)).all()))
    finally:
        engine.dispose()


def run_load(postgres: PostgresServer, config: LoadConfig) -> LoadReport:
    """The load against a fresh database on ``postgres`` and a server of its own; the database is dropped after."""
    report = LoadReport(config)
    database = postgres.create_database()
    url = postgres.url(database)
    try:
        with tempfile.TemporaryDirectory(prefix="adf-load-") as tmp:
            token, jobs, _ = seed_store(Path(tmp), config.rows, database_url=url, statuses=("succeeded",))
            env = {"ADF_DATABASE_URL": url, "ADF_MAX_QUEUED_JOBS_PER_USER": str(10 * config.jobs)}
            server = Server(Path(tmp), f"http://127.0.0.1:{free_port()}", env_extra=env).start()  # nothing listens
            try:
                uvloop.run(_load(server, token, jobs["succeeded"], report))
            finally:
                server.stop()
        _count_stored(url, report)
    finally:
        postgres.drop_database(database)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = LoadConfig()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    config = LoadConfig(**vars(parser.parse_args()))
    with throwaway_server(os.environ.get(PG_ENV) or None) as postgres:
        report = run_load(postgres, config)
        source = postgres.source
    print(f"# bench/api_load.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  {os.cpu_count()} cores  "
          f"python {platform.python_version()}  PostgreSQL ({source})")
    print(report.table())
    failures = report.failures()
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
