"""A job whose result tables cannot be read (issue 16 item 2), in the service: Ray says its driver
succeeded, a table is truncated; the job fails with an error naming the table, and the file stays as
it was (SQLite and PostgreSQL, a real local Ray's Jobs API running a stand-in driver)."""

from __future__ import annotations

import hashlib
import time

import pytest

from api.admission import schedule
from api.runner import RayJobs
from api.service import accept_grid, reconcile
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID
from tests.helpers.jobs import result_row
from trials.results import write_tables
from trials.spec import validate_grid
from trials.storage import JobStorage

pytestmark = pytest.mark.ray


def test_a_succeeded_job_whose_table_is_truncated_fails_naming_it_and_keeps_the_file(
        session, ray_dashboard, tmp_path, alice):
    settings = Settings(data_dir=tmp_path, ray_address="http://unused")
    ray = RayJobs(ray_dashboard, command="true")  # a driver that ends at once, as a finished job's
    job, _ = accept_grid(session, ray, settings, owner=alice, spec=validate_grid(dict(UNRUNNABLE_GRID, name="cut")),
                         request_hash="cut", idempotency_key=None)
    storage = JobStorage.at(job.storage_dir)
    storage.create(exist_ok=True)
    write_tables(storage, [result_row(0, "search"), result_row(0, "evaluation")])
    table = storage.local_dir / "results" / "evaluation.parquet"
    table.write_bytes(table.read_bytes()[:100])
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    assert schedule(session, ray, settings, None) == 1
    deadline = time.time() + 60
    while reconcile(session, ray, job, settings).status in ("queued", "running"):
        assert time.time() < deadline, "timed out"
        time.sleep(0.3)
    assert job.status == "failed"
    assert "results cannot be read" in job.error and "evaluation.parquet: the result table cannot be read" in job.error
    assert hashlib.sha256(table.read_bytes()).hexdigest() == digest
