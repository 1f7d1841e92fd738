import json
import re
import threading
import time
from datetime import timedelta, timezone

import pytest
from sqlalchemy import delete, func, select

from api.jobstore import (
    ALLOWED_TRANSITIONS,
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    JobStoreError,
    TrialNotFound,
    count_running,
    create_job,
    find_by_key,
    get_job,
    get_trial,
    hash_request,
    list_jobs,
    list_trials,
    replace_trials,
    set_progress,
    set_status,
)
from api.models import JOB_STATUSES, Job, TrialRow
from tests.helpers.jobs import ROOT, result_row, submit
from trials.results import RESULT_SCHEMA, read_table, write_tables

# --- create / get / list ---------------------------------------------------------------------


def test_create_job_stores_a_queued_job_under_the_storage_root(session, alice):
    job, created = submit(session, alice, "hmdb51-grid", n_trials=288)
    assert created
    assert re.fullmatch(r"j[0-9a-f]{12}", job.id)
    assert job.storage_dir == str(ROOT / job.id)
    assert (job.status, job.name, job.n_trials, job.owner.name) == ("queued", "hmdb51-grid", 288, "alice")
    assert json.loads(job.progress_json) == {}
    assert job.created_at.tzinfo == timezone.utc and job.started_at is None and job.ended_at is None


def test_job_times_read_back_as_utc(sessions, alice):
    with sessions() as s:
        job_id = submit(s, alice)[0].id
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.created_at.utcoffset() == timedelta(0)
        assert abs(job.created_at - job.updated_at) < timedelta(seconds=5)


def test_get_job_shows_a_job_to_its_owner_and_admins_only(session, alice, bob, admin):
    job, _ = submit(session, alice)
    assert get_job(session, job.id, viewer=alice).id == job.id
    assert get_job(session, job.id, viewer=admin).id == job.id
    with pytest.raises(JobNotFound, match=job.id):
        get_job(session, job.id, viewer=bob)
    with pytest.raises(JobNotFound, match="j000000000000"):
        get_job(session, "j000000000000", viewer=admin)


def test_list_jobs_pages_newest_first_with_the_total(session, alice, bob):
    ids = [submit(session, alice, f"g{i}")[0].id for i in range(5)]
    submit(session, bob)
    first, total = list_jobs(session, viewer=alice, limit=2)
    second, _ = list_jobs(session, viewer=alice, limit=2, offset=2)
    last, _ = list_jobs(session, viewer=alice, limit=2, offset=4)
    assert total == 5
    assert [j.id for j in first + second + last] == ids[::-1]


def test_list_jobs_filters_by_status(session, alice):
    a, _ = submit(session, alice, "a")
    b, _ = submit(session, alice, "b")
    set_status(session, a, "running")
    running, total = list_jobs(session, viewer=alice, status="running")
    assert total == 1 and [j.id for j in running] == [a.id]
    assert [j.id for j in list_jobs(session, viewer=alice, status="queued")[0]] == [b.id]
    with pytest.raises(JobStoreError, match="'runing' not in"):
        list_jobs(session, viewer=alice, status="runing")


def test_admins_list_every_users_jobs(session, alice, bob, admin):
    submit(session, alice)
    submit(session, bob)
    assert list_jobs(session, viewer=admin)[1] == 2
    assert {j.owner.name for j in list_jobs(session, viewer=bob)[0]} == {"bob"}


def test_count_running_counts_an_owners_queued_and_running_jobs(session, alice, bob):
    jobs = [submit(session, alice, f"g{i}")[0] for i in range(4)]
    submit(session, bob)
    set_status(session, jobs[0], "running")
    set_status(session, jobs[1], "cancelled")
    set_status(session, jobs[2], "running")
    set_status(session, jobs[2], "succeeded")
    assert count_running(session, alice) == 2  # jobs[0] running, jobs[3] queued
    assert count_running(session, bob) == 1


# --- idempotency -------------------------------------------------------------------------------


def test_the_same_key_and_body_return_the_first_job(session, alice):
    first, created = submit(session, alice, key="k1", body='{"a": 1}')
    again, created_again = submit(session, alice, key="k1", body='{"a": 1}')
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_the_same_key_with_another_body_is_a_conflict(session, alice):
    first, _ = submit(session, alice, key="k1", body='{"a": 1}')
    with pytest.raises(IdempotencyConflict, match=rf"'k1'.*{first.id}.*different request body"):
        submit(session, alice, key="k1", body='{"a": 2}')


def test_idempotency_keys_belong_to_one_owner(session, alice, bob):
    a, _ = submit(session, alice, key="k1")
    b, created = submit(session, bob, key="k1")
    assert created and a.id != b.id


def test_a_storage_uri_root_gives_a_job_uri_that_job_storage_opens(session, alice, tmp_path):
    from trials.storage import JobStorage

    job, _ = create_job(session, owner=alice, name="g", spec_json="{}", request_hash="h", n_trials=1,
                        storage_root=f"file://{tmp_path}/runs/")
    assert job.storage_dir == f"file://{tmp_path}/runs/{job.id}"
    storage = JobStorage.at(job.storage_dir)
    assert storage.uri == job.storage_dir and storage.path == f"{tmp_path}/runs/{job.id}"


def test_find_by_key_finds_only_the_owners_job_with_that_key(session, alice, bob):
    job, _ = submit(session, alice, key="k9")
    assert find_by_key(session, alice, "k9").id == job.id
    assert find_by_key(session, bob, "k9") is None and find_by_key(session, alice, "other") is None


def test_hash_request_ignores_key_order_but_not_values():
    assert hash_request({"name": "g", "space": {"cells": [1, 2]}}) == hash_request(
        {"space": {"cells": [1, 2]}, "name": "g"}
    )
    assert hash_request({"space": {"cells": [1, 2]}}) != hash_request({"space": {"cells": [2, 1]}})
    assert re.fullmatch(r"[0-9a-f]{64}", hash_request({}))


def test_jobs_without_a_key_are_always_new(session, alice):
    assert submit(session, alice)[0].id != submit(session, alice)[0].id


def test_concurrent_creates_with_one_key_make_one_job(sessions, alice):
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list = []
    errors: list = []

    def create():
        with sessions() as s:
            owner = s.merge(alice, load=False)
            barrier.wait()
            try:
                job, created = submit(s, owner, key="retry-me", body='{"x": 1}')
                outcomes.append((job.id, created))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * (n - 1) + [True]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


# --- status ------------------------------------------------------------------------------------

# The life cycle, as the service promises it (failed/cancelled → queued is a resume, running → queued
# the service's automatic resume when Ray lost the driver, succeeded → queued a rerun or an extension).
EXPECTED = {
    "queued": {"running", "cancelled", "failed"},
    "running": {"succeeded", "failed", "cancelled", "queued"},
    "failed": {"queued"},
    "cancelled": {"queued"},
    "succeeded": {"queued"},
}
PATH_TO = {
    "queued": [],
    "running": ["running"],
    "succeeded": ["running", "succeeded"],
    "failed": ["failed"],
    "cancelled": ["cancelled"],
}


def test_allowed_transitions_are_exactly_the_job_life_cycle(session, alice):
    assert {k: set(v) for k, v in ALLOWED_TRANSITIONS.items()} == EXPECTED
    for source in JOB_STATUSES:
        for target in JOB_STATUSES:
            job, _ = submit(session, alice)
            for step in PATH_TO[source]:
                set_status(session, job, step)
            if target in EXPECTED[source]:
                assert set_status(session, job, target).status == target
            else:
                with pytest.raises(InvalidTransition, match=rf"{job.id}.*'{source}' to '{target}'"):
                    set_status(session, job, target)
                session.refresh(job)
                assert job.status == source


def test_running_stamps_started_at_and_finishing_stamps_ended_at(session, alice):
    job, _ = submit(session, alice)
    set_status(session, job, "running", ray_job_id="raysubmit_abc")
    assert job.started_at is not None and job.ended_at is None and job.ray_job_id == "raysubmit_abc"
    set_status(session, job, "failed", error="trial search-S1-all-I1-C1-r0: CUDA out of memory")
    assert job.ended_at >= job.started_at
    session.expire_all()
    stored = session.get(Job, job.id)
    assert (stored.status, stored.error, stored.ray_job_id) == (
        "failed",
        "trial search-S1-all-I1-C1-r0: CUDA out of memory",
        "raysubmit_abc",
    )


def test_resuming_a_failed_job_queues_it_afresh(session, alice):
    job, _ = submit(session, alice)
    set_status(session, job, "running")
    set_status(session, job, "failed", error="boom")
    set_status(session, job, "queued")
    assert (job.status, job.error, job.started_at, job.ended_at) == ("queued", None, None, None)
    set_status(session, job, "running")
    assert job.started_at is not None


def test_a_succeeded_job_only_goes_back_to_the_queue(session, alice):
    job, _ = submit(session, alice)
    set_status(session, job, "running")
    set_status(session, job, "succeeded")
    for status in ("cancelled", "failed", "running"):  # a rerun or an extension queues it again; nothing else
        with pytest.raises(InvalidTransition, match=f"'succeeded' to '{status}' \\(allowed: queued\\)"):
            set_status(session, job, status)


def test_an_unknown_status_is_refused(session, alice):
    job, _ = submit(session, alice)
    with pytest.raises(InvalidTransition, match="unknown status 'done'"):
        set_status(session, job, "done")


def test_set_progress_stores_the_per_stage_counts(sessions, alice):
    with sessions() as s:
        job, _ = submit(s, alice)
        before = job.updated_at
        time.sleep(0.01)
        set_progress(s, job, {"search": {"done": 3, "total": 48}, "baselines": {"done": 7, "total": 7}})
    with sessions() as s:
        stored = s.get(Job, job.id)
        assert json.loads(stored.progress_json) == {
            "search": {"done": 3, "total": 48},
            "baselines": {"done": 7, "total": 7},
        }
        assert stored.updated_at > before


# --- trial rows --------------------------------------------------------------------------------


def test_trial_rows_have_exactly_the_result_schema_columns():
    columns = [c.key for c in TrialRow.__table__.columns]
    assert columns == ["job_id" if name == "job" else name for name in RESULT_SCHEMA.names]


def test_replace_trials_imports_ten_thousand_rows_quickly(session, alice, db_url):
    job, _ = submit(session, alice)
    rows = [result_row(i) for i in range(10_000)]
    start = time.perf_counter()
    assert replace_trials(session, job, rows) == 10_000
    elapsed = time.perf_counter() - start
    assert elapsed < (1.0 if db_url.startswith("sqlite") else 5.0), f"{elapsed:.2f} s"
    assert list_trials(session, job, limit=1)[1] == 10_000


def test_replace_trials_replaces_only_that_jobs_rows(session, alice):
    job, _ = submit(session, alice)
    other, _ = submit(session, alice)
    replace_trials(session, job, [result_row(i) for i in range(20)])
    replace_trials(session, other, [result_row(i) for i in range(5)])
    assert replace_trials(session, job, [result_row(i, trial_id=f"new{i}") for i in range(3)]) == 3
    rows, total = list_trials(session, job)
    assert total == 3 and [r.trial_id for r in rows] == ["new0", "new1", "new2"]
    assert list_trials(session, other)[1] == 5


def test_trial_values_round_trip(session, alice):
    job, _ = submit(session, alice)
    replace_trials(
        session, job, [result_row(7), result_row(8, status="failed", error="diverged", val_loss=None)]
    )
    session.expire_all()
    ok = get_trial(session, job, "t00007")
    assert ok.to_dict() == dict(result_row(7), job=job.id)
    failed = get_trial(session, job, "t00008")
    assert (failed.status, failed.error, failed.val_loss) == ("failed", "diverged", None)


def test_rows_of_a_parquet_result_table_import_unchanged(session, alice, tmp_path):
    job, _ = submit(session, alice)
    write_tables(tmp_path, [result_row(i, stage) for i, stage in enumerate(["baselines", "search", "bohb"])])
    rows = [r for stage in ("baselines", "search", "bohb") for r in read_table(tmp_path, stage).to_pylist()]
    assert replace_trials(session, job, rows) == 3
    assert [r.to_dict() for r in list_trials(session, job)[0]] == [
        dict(r, job=job.id) for r in sorted(rows, key=lambda r: (r["stage"], r["trial_id"]))
    ]


@pytest.fixture
def job_with_trials(session, alice):
    job, _ = submit(session, alice)
    rows = [result_row(i, stage) for stage in ("search", "evaluation") for i in range(48)]
    rows += [result_row(100 + i, "baselines", status="failed") for i in range(7)]
    replace_trials(session, job, rows)
    return job, rows


def test_list_trials_filters_by_stage_setting_and_status(session, job_with_trials):
    job, rows = job_with_trials

    def expected(**where):
        return sorted((r["stage"], r["trial_id"]) for r in rows if all(r[k] in v for k, v in where.items()))

    def got(**filters):
        page, total = list_trials(session, job, limit=1000, **filters)
        assert total == len(page)
        return [(r.stage, r.trial_id) for r in page]

    assert got(stage="evaluation") == expected(stage={"evaluation"})
    assert got(operators="S2", n_cells=[1, 4]) == expected(operators={"S2"}, n_cells={1, 4})
    assert got(stage="search", discretization="topk", n_inputs=3) == expected(
        stage={"search"}, discretization={"topk"}, n_inputs={3}
    )
    assert got(status="failed") == expected(status={"failed"}) and len(got(status="failed")) == 7
    assert got(stage=["baselines", "search"]) == expected(stage={"baselines", "search"})


def test_list_trials_pages_in_stage_and_trial_order(session, job_with_trials):
    job, rows = job_with_trials
    everything = sorted((r["stage"], r["trial_id"]) for r in rows)
    by_offset, by_key, after = [], [], None
    for offset in range(0, len(rows), 10):
        page, total = list_trials(session, job, limit=10, offset=offset)
        assert total == len(rows)
        by_offset += [(r.stage, r.trial_id) for r in page]
    while page := list_trials(session, job, limit=10, after=after)[0]:
        by_key += [(r.stage, r.trial_id) for r in page]
        after = by_key[-1]
    assert by_offset == by_key == everything


def test_get_trial_finds_a_row_by_trial_id_and_stage(session, job_with_trials):
    job, _ = job_with_trials
    assert get_trial(session, job, "t00003").stage == "search"  # the earlier stage of a search trial
    assert get_trial(session, job, "t00003", stage="evaluation").stage == "evaluation"
    with pytest.raises(TrialNotFound, match=rf"{job.id} has no trial 'nope'"):
        get_trial(session, job, "nope")
    with pytest.raises(TrialNotFound, match="in stage 'bohb'"):
        get_trial(session, job, "t00003", stage="bohb")


def test_deleting_a_job_deletes_its_trial_rows(session, job_with_trials):
    job, _ = job_with_trials
    session.execute(delete(Job).where(Job.id == job.id))  # the database cascades (SQLite: foreign keys on)
    session.commit()
    assert session.scalar(select(func.count()).select_from(TrialRow)) == 0
