"""bench/api_load.py kept working: a small run of it on PostgreSQL, and its verdict on a run that broke.

The small run is the full load scaled down (20 submissions from 5 clients, 500 rows), except for
its clients: 5 + 95, so that the warm-up sends 100 store-bound requests at once, more than the
connection pool holds (the stall api/deps.py's session slots prevent).
"""

from __future__ import annotations

import importlib.util

import pytest

from bench.api_load import MIB, LoadConfig, LoadReport, run_load
from tests.helpers.postgres import find_pg_bindir

needs_postgres = pytest.mark.skipif(
    find_pg_bindir() is None and importlib.util.find_spec("pgserver") is None,
    reason="no PostgreSQL here: neither initdb and pg_ctl (Debian: apt-get install postgresql, see "
           ".ci/postgres-setup.sh) nor the pgserver wheel (pip install -c constraints.txt -e '.[test]')")


@needs_postgres
@pytest.mark.service
def test_small_load_on_postgres_answers_no_5xx_and_stores_each_key_once(postgres_server):
    report = run_load(postgres_server, LoadConfig(rows=500, jobs=20, writers=5, readers=95, retry_share=0.5))

    assert report.failures() == []
    assert report.statuses["list", 200] == 101  # 100 clients' warm-up at once, and the count afterwards
    assert sum(report.stored.values()) == len(report.keys) == 20 and report.listed == 21
    assert report.stored_statuses == {"queued": 20}  # the Ray address refuses: the queue holds them
    assert report.deliberate > 0 and report.replayed >= report.deliberate
    assert all(len(ids) == 1 for ids in report.answers.values())
    assert len(report.read_latencies) > 95 and report.statuses["read", 200] == len(report.read_latencies) + 1
    assert 0 < report.rss_before <= report.rss_peak


def test_a_run_with_a_5xx_a_lost_and_a_doubled_key_and_grown_memory_fails_on_each():
    report = LoadReport(LoadConfig(jobs=3))
    report.statuses.update({("submit", 202): 4, ("submit", 503): 1, ("read", 200): 10})
    report.answers.update({"a": {"job-a"}, "b": {"job-b", "job-b2"}, "c": set()})
    report.stored.update({"a": 1, "b": 2})
    report.listed = 4
    report.rss_before, report.rss_after = 100 * MIB, 201 * MIB

    failures = "\n".join(report.failures())

    assert "1 answers were 5xx" in failures
    assert "1 keys have no job in the store, e.g. c" in failures
    assert "1 jobs more than keys" in failures
    assert "1 keys answered with more than one job id, e.g. b" in failures
    assert "201 MiB > 1.5 × before + 50 MiB = 200 MiB" in failures
    assert len(report.failures()) == 5  # GET /v1/jobs counted 4 = 3 keys + the imported job: no failure

