"""A seeded fault schedule over the whole service (issue 16 item 1; bench/faults.py runs it longer):
20 kills by pid across smoke jobs on a multi-process cluster under `adf-service serve` over PostgreSQL:
a trial's actor, a worker node's raylet, a job's driver, the Ray head (then a new cluster), the API
server (then restarted) and PostgreSQL (then restarted). Every job must end `succeeded` with each
trial's row exactly once and the store's rows equal to its Parquet tables, the job store consistent,
and the usage accounting must count the lost work.

Marked `faults`: CI runs it in `make test-faults`, where it takes about 7 of its minutes.
Of its eighteen runs so far (docs/reliability.md, A-R), five found defects, all fixed: a checkpoint
a dead driver's snapshot named but the trial had deleted; rows imported twice at once on
PostgreSQL; a claim whose round PostgreSQL cut off left a job queued for good; a trial that spent
its retries while saving, then resumed by the job's next attempt, ended "without a result" (a dead
driver's STOP that Tune kept; run C's case, read again in run L); and deploy/local-cluster.sh gave a
head's agent a port Ray could take first. It left `make test-slow` for CI after the runs that
followed those fixes passed."""

from __future__ import annotations

import pytest

from bench.faults import KINDS, run_schedule
from tests.helpers.postgres import PostgresUnavailable, find_pg_bindir, throwaway_server

pytestmark = [pytest.mark.faults, pytest.mark.ray, pytest.mark.service, pytest.mark.postgres,
              pytest.mark.timeout(1800)]


def test_twenty_kills_by_pid_lose_no_job_and_no_row(store, tmp_path):
    if find_pg_bindir() is None:
        pytest.skip("the fault schedule restarts PostgreSQL by pid: it needs the system's binaries "
                    "(.ci/postgres-setup.sh; Debian: apt-get install postgresql)")
    try:
        server = throwaway_server("system")
        postgres = server.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        report = run_schedule(tmp_path, store.path, postgres, kills=20, seed=1)
    finally:
        server.__exit__(None, None, None)
    print(report.table())
    assert not report.problems, report.table()
    assert len(report.kills) == 20 and {k.kind for k in report.kills} == set(KINDS)
    assert set(report.jobs.values()) == {"succeeded"} and len(report.jobs) >= 2
    assert report.lost_gpu_seconds > 0 and report.retried_trials > 0
