"""The queue and the automatic resume in the service (api/service.py), on SQLite and PostgreSQL,
with a real local Ray's Jobs API running stand-in drivers and a hand-made view of its nodes.

A stand-in driver writes its pid to a file and sleeps, so that a test can kill it by that pid,
as a lost node or a killed driver process would end it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from api.admission import schedule
from api.auth import set_quota
from api.jobstore import replace_trials, set_status
from api.models import utcnow
from api.ports import free_port
from api.runner import RayJobs
from api.service import (
    NothingToDo,
    accept_grid,
    attempts,
    extend_job,
    reconcile,
    rerun_job,
    resume_job,
)
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID
from tests.helpers.jobs import result_row
from trials.spec import validate_grid

pytestmark = pytest.mark.ray


@dataclass
class Node:
    """A node as the queue reads it (api/cluster.py's NodeResources has these fields)."""

    total: dict[str, float]
    available: dict[str, float] = field(default_factory=dict)
    alive: bool = True
    node_id: str = "n"


def gpu_node(free: float = 1.0) -> Node:
    return Node({"GPU": 1.0, "CPU": 4.0}, {"GPU": free, "CPU": 4.0})


@pytest.fixture
def ray(ray_dashboard, tmp_path) -> RayJobs:
    # `sh -c SCRIPT run-job <job> --attempt <n>`: the pid file is named after the job and attempt
    script = f"echo \"$@\" > {tmp_path}/\"$1-$3.args\"; echo $$ > {tmp_path}/\"$1-$3.pid\"; exec sleep 120"
    return RayJobs(ray_dashboard, command=f"sh -c '{script}'")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, ray_address="http://unused", auto_resume_attempts=2,
                    auto_resume_backoff_seconds=30)


def submit(session, ray, settings, owner, name: str, *, priority: int = 0, gpus: float = 1.0):
    grid = dict(UNRUNNABLE_GRID, name=name, priority=priority, resources={"gpus_per_trial": gpus, "cpus_per_trial": 1})
    job, created = accept_grid(session, ray, settings, owner=owner, spec=validate_grid(grid), request_hash=name,
                               idempotency_key=None)
    assert created
    return job


def driver_pid(tmp_path: Path, job_id: str, attempt: int, timeout: float = 60) -> int:
    pid_file = tmp_path / f"{job_id}-{attempt}.pid"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        time.sleep(0.2)
    raise TimeoutError(f"no driver of {job_id} attempt {attempt} started")


def wait_until(check, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.3)


def stop_all(ray: RayJobs, *jobs) -> None:
    for job in jobs:
        if job.ray_job_id:
            ray.stop(job.ray_job_id)


def test_an_accepted_job_waits_queued_until_the_queue_admits_it(session, ray, settings, alice):
    job = submit(session, ray, settings, alice, "first")
    assert (job.status, job.ray_job_id, job.admitted_at) == ("queued", None, None)
    gone = RayJobs(f"http://127.0.0.1:{free_port()}")  # a cluster that does not answer: nothing goes
    assert schedule(session, gone, settings, None) == 0
    assert job.queue_reason == "waiting: the Ray cluster does not answer"
    assert schedule(session, ray, settings, [gpu_node()]) == 1
    try:
        assert job.ray_job_id == f"{job.id}-1" and job.admitted_at is not None and job.queue_reason is None
        assert [(a["attempt"], a["by"], a["reason"]) for a in attempts(job)] == [(1, "service", "admitted")]
        assert attempts(job)[0]["started_at"] is not None
        assert job.gpus == 1.0  # one GPU free on the cluster: what the job can hold at once
        wait_until(lambda: reconcile(session, ray, job, settings).status == "running")
    finally:
        stop_all(ray, job)


def test_priority_then_submission_order_and_the_reason_of_every_waiting_job(session, ray, settings, alice, bob):
    early = submit(session, ray, settings, alice, "early")
    late = submit(session, ray, settings, bob, "late")
    urgent = submit(session, ray, settings, bob, "urgent", priority=5)
    assert schedule(session, ray, settings, [gpu_node()]) == 1  # room for one trial of one job
    try:
        assert urgent.ray_job_id is not None and early.ray_job_id is None and late.ray_job_id is None
        assert early.queue_reason.startswith("waiting for room: a trial asks for 1 GPU and 1 CPU on one node; "
                                             "the cluster has 0 GPU and 3 CPU free")
        assert late.queue_reason == f"behind job {early.id} (priority 0), which waits for room"
    finally:
        stop_all(ray, urgent)


def test_a_jobs_api_that_does_not_take_the_job_leaves_it_queued_for_the_next_round(session, ray, settings, alice):
    job = submit(session, ray, settings, alice, "later")
    gone = RayJobs(f"http://127.0.0.1:{free_port()}")  # the nodes were read, then the Jobs API went away
    assert schedule(session, gone, settings, [gpu_node()]) == 0
    assert (job.status, job.admitted_at, job.ray_job_id) == ("queued", None, None)
    assert job.queue_reason.startswith("waiting: the Ray Jobs API did not take the job yet")
    assert attempts(job)[-1]["started_at"] is None
    assert schedule(session, ray, settings, [gpu_node()]) == 1  # the next round, with Ray back
    try:
        assert job.ray_job_id == f"{job.id}-1" and [a["attempt"] for a in attempts(job)] == [1]
    finally:
        stop_all(ray, job)


def test_without_a_view_of_the_nodes_jobs_go_on_order_and_quotas_alone(session, ray, settings, alice):
    set_quota(session, "alice", {"max_running_jobs": 1})
    first, second = submit(session, ray, settings, alice, "first"), submit(session, ray, settings, alice, "second")
    assert schedule(session, ray, settings, None) == 1
    try:
        assert first.ray_job_id and second.queue_reason.startswith("over quota")
    finally:
        stop_all(ray, first)


def test_a_user_over_the_running_jobs_quota_waits_while_another_user_runs(session, ray, settings, alice, bob):
    set_quota(session, "alice", {"max_running_jobs": 1})
    a1, a2 = submit(session, ray, settings, alice, "a1"), submit(session, ray, settings, alice, "a2")
    b1 = submit(session, ray, settings, bob, "b1")
    assert schedule(session, ray, settings, [gpu_node(), gpu_node()]) == 2
    try:
        assert a1.ray_job_id and b1.ray_job_id and a2.ray_job_id is None
        assert a2.queue_reason == "over quota: user 'alice' runs 1 of 1 jobs at once"
    finally:
        stop_all(ray, a1, b1)


def test_a_gpu_quota_caps_the_trials_at_once_that_the_driver_gets(session, ray, settings, alice):
    set_quota(session, "alice", {"max_gpus": 0.5})
    job = submit(session, ray, settings, alice, "small", gpus=0.25)
    assert schedule(session, ray, settings, [gpu_node()]) == 1
    try:
        assert json.loads(job.spec_json)["max_concurrent_trials"] == 2 and job.gpus == 0.5
    finally:
        stop_all(ray, job)


def test_a_killed_driver_resumes_automatically_after_a_backoff_then_fails_when_resumes_are_spent(
        session, ray, settings, alice, tmp_path):
    job = submit(session, ray, settings, alice, "lost")
    schedule(session, ray, settings, [gpu_node()])
    try:
        for attempt in (1, 2, 3):
            wait_until(lambda: reconcile(session, ray, job, settings).status == "running")
            os.kill(driver_pid(tmp_path, job.id, attempt), signal.SIGKILL)  # as a lost node ends it
            wait_until(lambda: reconcile(session, ray, job, settings).status != "running")
            if attempt == 3:
                break
            assert job.status == "queued" and job.auto_resumes == attempt and job.admitted_at is None
            delay = 30 * 2 ** (attempt - 1)
            assert f"resumes automatically ({attempt} of 2) after {delay:g} s" in job.queue_reason
            assert job.next_attempt_at - utcnow() > timedelta(seconds=delay - 10)
            assert schedule(session, ray, settings, [gpu_node()]) == 0  # still in its backoff
            assert job.queue_reason.startswith("resumes automatically at")
            job.next_attempt_at = utcnow() - timedelta(seconds=1)
            session.commit()
            assert schedule(session, ray, settings, [gpu_node()]) == 1
            assert job.ray_job_id == f"{job.id}-{attempt + 1}"
            assert attempts(job)[-1]["by"] == "service" and "Ray lost the job's driver" in attempts(job)[-1]["reason"]
        assert job.status == "failed"
        assert job.error.startswith("Ray lost the job's driver after 2 automatic resumes")
        assert len(attempts(job)) == 3
    finally:
        stop_all(ray, job)


def test_a_job_the_cluster_no_longer_knows_is_resumed_not_failed(session, ray, settings, alice):
    job = submit(session, ray, settings, alice, "forgotten")
    schedule(session, ray, settings, [gpu_node()])
    stop_all(ray, job)
    job.ray_job_id = f"{job.id}-7"  # what a new cluster answers: no such job
    session.commit()
    reconcile(session, ray, job, settings)
    assert job.status == "queued" and job.auto_resumes == 1
    assert "Ray has no job" in job.queue_reason


def test_a_resume_by_hand_goes_through_the_queue_and_resets_the_automatic_count(session, ray, settings, alice):
    job = submit(session, ray, settings, alice, "by-hand")
    schedule(session, ray, settings, [gpu_node()])
    stop_all(ray, job)
    wait_until(lambda: reconcile(session, ray, job, settings).status == "cancelled")
    job.auto_resumes = 2
    resume_job(session, ray, job, by="alice")
    assert (job.status, job.auto_resumes, job.admitted_at) == ("queued", 0, None)
    assert schedule(session, ray, settings, [gpu_node()]) == 1
    try:
        assert job.ray_job_id == f"{job.id}-2"
        assert [a["by"] for a in attempts(job)] == ["service", "alice"]
    finally:
        stop_all(ray, job)


def ended(session, job, status: str, rows=()) -> None:
    """The job as its Ray job would leave it: ended, with its result rows imported."""
    set_status(session, job, "running")
    set_status(session, job, status)
    replace_trials(session, job, list(rows))


def test_a_rerun_queues_the_jobs_failed_trials_for_a_driver_that_reruns_them(session, ray, settings, alice, tmp_path):
    job = submit(session, ray, settings, alice, "rerun")
    schedule(session, ray, settings, [gpu_node()])
    stop_all(ray, job)
    ended(session, job, "succeeded", [result_row(0), result_row(1)])
    with pytest.raises(NothingToDo, match="succeeded with no failed trial"):
        rerun_job(session, job, by="alice")
    replace_trials(session, job, [result_row(0), result_row(1, status="failed", error="diverged")])
    rerun_job(session, job, by="alice")
    assert (job.status, job.queue_reason) == ("queued", "waiting for the queue")
    assert attempts(job)[-1] | {"at": None} == {"attempt": 2, "at": None, "by": "alice", "reason": "rerun of 1 failed "
                                                "trial", "mode": "rerun", "started_at": None}
    assert schedule(session, ray, settings, [gpu_node()]) == 1
    try:
        driver_pid(tmp_path, job.id, 2)
        assert (tmp_path / f"{job.id}-2.args").read_text().split() == [  # after `run-job` ($0)
            job.id, "--attempt", "2", "--resume", "--rerun-failed"]
    finally:
        stop_all(ray, job)
    wait_until(lambda: reconcile(session, ray, job, settings).status == "cancelled")
    with pytest.raises(NothingToDo, match="is queued|is running"):
        job.status = "queued"
        rerun_job(session, job, by="alice")


def test_an_extension_adds_repeats_to_a_succeeded_jobs_spec_for_a_driver_that_runs_only_the_new_trials(
        session, ray, settings, alice, tmp_path):
    job = submit(session, ray, settings, alice, "extend")
    with pytest.raises(NothingToDo, match="is queued"):
        extend_job(session, job, repeats=2, by="alice", max_trials=100)
    schedule(session, ray, settings, [gpu_node()])
    stop_all(ray, job)
    ended(session, job, "succeeded", [result_row(0)])
    before = job.n_trials
    with pytest.raises(ValueError, match="repeats: 201 repeats make"):
        extend_job(session, job, repeats=200, by="alice", max_trials=100)
    assert job.status == "succeeded"  # a refused extension changes nothing
    extend_job(session, job, repeats=2, by="alice", max_trials=100)
    assert json.loads(job.spec_json)["repeats"] == 3 and job.n_trials == before + 2
    assert attempts(job)[-1]["reason"] == "2 more repeats (repeats 1 → 3)" and attempts(job)[-1]["mode"] == "extend"
    assert schedule(session, ray, settings, [gpu_node()]) == 1
    try:
        driver_pid(tmp_path, job.id, 2)
        assert (tmp_path / f"{job.id}-2.args").read_text().split() == [job.id, "--attempt", "2", "--extend"]
        wait_until(lambda: reconcile(session, ray, job, settings).status == "running")
        os.kill(driver_pid(tmp_path, job.id, 2), signal.SIGKILL)  # Ray loses the extension's driver
        wait_until(lambda: reconcile(session, ray, job, settings).status == "queued")
        job.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()
        assert schedule(session, ray, settings, [gpu_node()]) == 1
        driver_pid(tmp_path, job.id, 3)  # the automatic resume goes on extending
        assert (tmp_path / f"{job.id}-3.args").read_text().split() == [job.id, "--attempt", "3", "--extend"]
    finally:
        stop_all(ray, job)


def test_a_claim_whose_round_stopped_is_recovered_from_what_ray_has(session, ray, settings, alice, tmp_path):
    """A server (or its database) that stops between claiming a job and storing its Ray job leaves the job
    claimed with no Ray job (the fault schedule met one, queued for good). The next round asks Ray for
    the attempt's fixed submission id: the job follows the driver that was started, or is queued again."""
    from sqlalchemy import update

    from api.admission import CLAIM_GRACE_SECONDS, _claim
    from api.models import Job

    started, never = submit(session, ray, settings, alice, "started"), submit(session, ray, settings, alice, "never")
    for job in (started, never):  # the round's claim, committed; then the server stopped
        assert _claim(session, job) is not None
    ray.submit(started.id, started.spec_json, attempt=1, resume=False)  # ... after handing one to Ray
    session.execute(update(Job).values(admitted_at=utcnow() - timedelta(seconds=CLAIM_GRACE_SECONDS + 1)))
    session.commit()
    assert schedule(session, ray, settings, [gpu_node(), gpu_node()]) == 1  # never's attempt, this round
    try:
        for job in (started, never):
            session.refresh(job)
            assert (job.status, job.ray_job_id, job.queue_reason) == ("queued", f"{job.id}-1", None)
            assert [a["attempt"] for a in attempts(job)] == [1] and attempts(job)[0]["started_at"]
            wait_until(lambda j=job: reconcile(session, ray, j, settings).status == "running")
        driver_pid(tmp_path, started.id, 1)  # one driver each: started's was not submitted again
        assert not (tmp_path / f"{started.id}-2.pid").exists()
        # A submission whose answer was lost, made again, is the same driver's
        assert ray.submit(started.id, started.spec_json, attempt=1, resume=False) == f"{started.id}-1"
    finally:
        stop_all(ray, started, never)


def test_a_fresh_claim_is_left_to_its_round(session, ray, settings, alice):
    from api.admission import _claim

    job = submit(session, ray, settings, alice, "fresh")
    assert _claim(session, job) is not None  # a round (of another server) is handing it to Ray now
    assert schedule(session, ray, settings, [gpu_node()]) == 0
    session.refresh(job)
    assert job.admitted_at is not None and job.ray_job_id is None
