"""The fault schedule's judge (bench/fault_checks.py), on a real PostgreSQL job store and real Parquet
tables: it must pass a clean job and name each defect it exists to catch, since a judge that passes
everything would make every fault run look clean."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session

from api.auth import create_user
from api.db import make_engine, upgrade
from api.models import Job, TrialRow, utcnow
from bench.fault_checks import Kill, Report, check, tune_failures
from tests.helpers.postgres import PostgresServer
from trials.grid_sections import DEFAULT_MAX_FAILURES
from trials.pipeline import ENDED_WITHOUT_RESULT
from trials.spec import parse_grid

EXPECTED = {"baselines": 1, "search": 1}


def _row(stage: str, key: str, status: str = "succeeded", **extra) -> dict:
    return {"stage": stage, "trial_id": f"{key}-id", "trial_key": key, "status": status, "error": None,
            "attempts": 1, "lost_gpu_seconds": 0.0, **extra}


@pytest.fixture
def store(postgres_server: PostgresServer):
    """A migrated job store on a fresh PostgreSQL database: (its conninfo, a session on it)."""
    name = postgres_server.create_database()
    engine = make_engine(postgres_server.url(name))
    upgrade(engine)
    try:
        with Session(engine) as s:
            yield postgres_server.conninfo(name), s
    finally:
        engine.dispose()
        postgres_server.drop_database(name)


def _job(s: Session, job_id: str, status: str, rows: list[dict], shared: Path, grid: str = "") -> None:
    """A job in the store with ``rows``, the same rows in its Parquet tables, and the grid its spec.json
    records (a minimal one, then ``grid``'s YAML lines), as the driver writes it."""
    owner = create_user(s, f"owner-{job_id}")
    s.add(Job(id=job_id, owner_id=owner.id, name="g", status=status, spec_json="{}", request_hash="h",
              storage_dir=str(shared / job_id), n_trials=len(rows), results_at=utcnow() if rows else None))
    s.flush()
    for r in rows:
        s.add(TrialRow(job_id=job_id, stage=r["stage"], trial_id=r["trial_id"], trial_key=r["trial_key"],
                       status=r["status"]))
    s.commit()
    tables = shared / job_id / "results"
    tables.mkdir(parents=True)
    spec = parse_grid(f"name: g\ndataset: {{store: {shared / 'store'}}}\n{grid}")
    (shared / job_id / "spec.json").write_text(spec.model_dump_json())
    for stage in EXPECTED:
        pq.write_table(pa.Table.from_pylist([{"stage": r["stage"], "trial_id": r["trial_id"]}
                                             for r in rows if r["stage"] == stage]), tables / f"{stage}.parquet")


def _judge(rows_by_job: dict[str, list[dict]], shared: Path, conninfo: str, kills: list[Kill]) -> Report:
    report = Report(seed=1, kills=kills, jobs={j: "succeeded" for j in rows_by_job})
    check(report, EXPECTED, lambda job_id: rows_by_job[job_id], shared, conninfo)
    return report


def test_a_clean_run_has_no_problems_and_counts_rows_and_lost_work(store, tmp_path: Path):
    conninfo, s = store
    rows = [_row("baselines", "b0"), _row("search", "s0", attempts=2, lost_gpu_seconds=3.5)]
    _job(s, "j1", "succeeded", rows, tmp_path)
    report = _judge({"j1": rows}, tmp_path, conninfo, [Kill("trial_worker", 1, "w", 1.0, recovered_s=0.4)])
    assert report.problems == []
    assert (report.rows, report.retried_trials, report.lost_gpu_seconds, report.longest_recovery_s) == (2, 1, 3.5, 0.4)


def test_each_defect_is_named(store, tmp_path: Path):
    conninfo, s = store
    doubled = [_row("baselines", "b0"), _row("search", "s0"), _row("search", "s0")]
    _job(s, "j1", "succeeded", doubled[:2], tmp_path)
    stale = [_row("baselines", "b0"), _row("search", "s1")]  # the API's rows, not the tables' (s0)
    _job(s, "j2", "succeeded", [_row("baselines", "b0"), _row("search", "s0")], tmp_path)
    _job(s, "j3", "running", [], tmp_path)  # the store still has it active
    report = _judge({"j1": doubled, "j2": stale}, tmp_path, conninfo, [Kill("trial_worker", 1, "w", 1.0)])
    problems = "\n".join(report.problems)
    assert "job j1: rows per stage {'baselines': 1, 'search': 2}" in problems
    assert "job j1: a trial's row more than once" in problems
    assert "job j2: the store's rows differ from its Parquet tables" in problems
    assert "store: job j3 still running" in problems
    assert "trial workers were killed, but no row counts a second attempt" in problems


def _failed(trial_dir: Path, times: int) -> None:
    """Tune's error.txt of a trial that failed ``times`` times."""
    trial_dir.mkdir(parents=True)
    (trial_dir / "error.txt").write_text(
        "".join(f"Failure # {n} (occurred at 2026-12-06)\nActorDiedError\n\n" for n in range(1, times + 1)))


def test_a_failed_row_is_a_problem_unless_its_trial_spent_its_grids_retries(store, tmp_path: Path):
    conninfo, s = store
    rows = {job: [_row("baselines", f"b-{job}"), _row("search", f"s-{job}", status="failed", error="gone")]
            for job in ("j1", "j2", "j3", "j4")}
    lost = f"{ENDED_WITHOUT_RESULT}: its last result was search epoch 3/5"
    rows["j4"][1]["error"] = lost
    for job, job_rows in rows.items():
        _job(s, job, "succeeded", job_rows, tmp_path, "resources: {max_failures: 0}\n" if job == "j3" else "")
    _failed(tmp_path / "j1" / "s-j1", DEFAULT_MAX_FAILURES + 1)  # the default's retries spent
    _failed(tmp_path / "j2" / "s-j2", 1)  # one failure: the default retries it, so its row must not fail
    _failed(tmp_path / "j3" / "s-j3", 1)  # one failure, and a grid that retries none
    _failed(tmp_path / "j4" / "s-j4", DEFAULT_MAX_FAILURES + 1)  # spent, but its row lost the error
    report = _judge(rows, tmp_path, conninfo, [])
    assert report.exhausted == {("j1", "s-j1", DEFAULT_MAX_FAILURES + 1), ("j3", "s-j3", 1)}
    assert report.problems == ["job j2: a failed row after 1 failure(s) of its trial: ('search', 's-j2', 'gone')",
                               f"job j4: a failed row after 3 failure(s) of its trial: ('search', 's-j4', '{lost}')"]


def test_a_job_that_did_not_succeed_is_a_problem_with_its_error(store, tmp_path: Path):
    conninfo, _ = store
    report = Report(seed=1, jobs={"j9": "failed"}, errors={"j9": "the Ray Jobs API did not take the job"})
    check(report, EXPECTED, lambda job_id: pytest.fail("a failed job's rows are not read"), tmp_path, conninfo)
    assert report.problems == ["job j9 ended failed: the Ray Jobs API did not take the job"]


def test_tune_failures_reads_the_highest_failure_number(tmp_path: Path):
    assert tune_failures(tmp_path) == 0  # no error.txt: the trial never failed
    (tmp_path / "error.txt").write_text("Failure # 1 (at t)\nx\nFailure # 2 (at t + 1)\ny\n  Failure # 7 quoted\n")
    assert tune_failures(tmp_path) == 2
