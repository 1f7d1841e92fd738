"""GPU-hours in the service (api/usage.py): a driver's totals into the store, per user and job in a window,
the stale-trial notice, GET /v1/usage with who may see what, and `adf-service usage` / `status` printing them.
Every store test runs on SQLite and PostgreSQL (tests/api/conftest.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.auth import UserNotFound, issue_token
from api.jobstore import set_progress, set_status
from api.models import Job, utcnow
from api.settings import Settings
from api.usage import stale_notice, usage_by_user, user_gpu_hours
from tests.api.test_probe_defects import call, is_problem
from tests.helpers.jobs import submit
from tests.helpers.served import served as serve_app

HOUR = 3600.0
NODE = "ab12cd34ef56" + "0" * 44


def snapshot(gpu_h: float, lost_gpu_h: float = 0.0, cpu_h: float = 0.0, running: dict | None = None) -> dict:
    """A driver's progress.json (trials/progress.py) with its usage (trials/usage.py UsageLedger.progress)."""
    usage = {"gpu_seconds": gpu_h * HOUR, "lost_gpu_seconds": lost_gpu_h * HOUR, "cpu_seconds": cpu_h * HOUR,
             "lost_cpu_seconds": 0.0, "gpu_hours": gpu_h,
             "summary": f"{gpu_h:.1f} GPU-hours, as the driver says"}
    return {"stages": {"search": {"total": 2, "succeeded": 1, "failed": 0, "running": 1, "pending": 0}},
            "usage": usage, "running": running or {}}


def job_with(s, owner, gpu_h: float, *, created_days_ago: float = 0.0, ended_days_ago: float | None = None,
             name: str = "grid") -> Job:
    """A job of ``owner`` whose driver counted ``gpu_h`` GPU-hours, created (and ended) that many days ago."""
    job, _ = submit(s, owner, name, body=f"{name}-{owner.name}-{gpu_h}-{created_days_ago}")
    set_status(s, job, "running")
    set_progress(s, job, snapshot(gpu_h, cpu_h=2 * gpu_h))
    if ended_days_ago is not None:
        set_status(s, job, "succeeded")
        job.ended_at = utcnow() - timedelta(days=ended_days_ago)
    job.created_at = utcnow() - timedelta(days=created_days_ago)
    s.commit()
    return job


# --- the store -----------------------------------------------------------------------------------------


def test_progress_brings_the_drivers_totals_into_the_job_and_a_stale_trial_into_its_notice(sessions, alice):
    now = time.time()
    with sessions() as s:
        job, _ = submit(s, alice)
        set_status(s, job, "running")
        stale = {"search-S1-all-I1-C1-r0": {"last_progress_at": now - 41 * 60, "node_id": NODE, "attempt": 2},
                 "baselines-R-r0": {"last_progress_at": now - 5, "node_id": NODE, "attempt": 1}}
        set_progress(s, job, snapshot(14.2, lost_gpu_h=3.1, cpu_h=56.8, running=stale), stale_after_s=1800)
        job_id = job.id
    with sessions() as s:  # read back from the database
        job = s.get(Job, job_id)
        assert (job.gpu_seconds, job.lost_gpu_seconds, job.cpu_seconds) == pytest.approx(
            (14.2 * HOUR, 3.1 * HOUR, 56.8 * HOUR))
        assert job.notice == ("1 trial without progress for over 30 min: search-S1-all-I1-C1-r0 "
                              "(node ab12cd34…, last 41 min ago)")
        set_progress(s, job, snapshot(15.0, running={}), stale_after_s=1800)  # it reported again: the notice goes
        set_progress(s, job, {"stages": {}})  # a driver from before usage was recorded: the totals stay
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.notice is None and job.gpu_seconds == pytest.approx(15.0 * HOUR)


def test_a_users_hours_count_the_jobs_created_or_ended_in_the_window_or_still_active(
        session, alice, bob, admin):
    inside = [job_with(session, alice, 1.0, created_days_ago=2, ended_days_ago=1),  # created and ended inside
              job_with(session, alice, 2.0, created_days_ago=40, ended_days_ago=10),  # ended inside
              job_with(session, alice, 4.0, created_days_ago=90)]  # running since long before: still active
    job_with(session, alice, 8.0, created_days_ago=60, ended_days_ago=31)  # wholly before the window
    job_with(session, bob, 16.0, created_days_ago=1)
    since = utcnow() - timedelta(days=30)

    [mine] = usage_by_user(session, user="alice", since=since)
    assert (mine.user, mine.gpu_hours, mine.cpu_hours) == ("alice", pytest.approx(7.0), pytest.approx(14.0))
    assert [j.job_id for j in mine.jobs] == [inside[2].id, inside[1].id, inside[0].id]  # oldest first
    assert user_gpu_hours(session, alice, since) == pytest.approx(7.0)
    assert user_gpu_hours(session, alice, utcnow() - timedelta(days=100)) == pytest.approx(15.0)
    everyone = usage_by_user(session, since=since)
    assert [(u.user, round(u.gpu_hours, 6)) for u in everyone] == [("alice", 7.0), ("bob", 16.0)]
    [idle] = usage_by_user(session, user="root", since=since)
    assert idle.jobs == () and idle.gpu_hours == 0.0  # a user with nothing in the window: zeros
    with pytest.raises(UserNotFound, match="nobody"):
        usage_by_user(session, user="nobody")


def test_the_stale_notice_names_the_stalest_trials_first_and_counts_the_rest():
    now = 10_000.0
    running = {f"random-S2-all-I1-C1-r{i}": {"last_progress_at": now - 60 * (10 + i), "node_id": None,
                                             "attempt": 1} for i in range(8)}
    running["baselines-R-r0"] = {"last_progress_at": now - 30, "node_id": NODE, "attempt": 1}
    notice = stale_notice({"running": running}, now, 9.5 * 60)
    assert notice.startswith("8 trials without progress for over 10 min: random-S2-all-I1-C1-r7 (node not "
                             "known yet, last 17 min ago), random-S2-all-I1-C1-r6 (")
    assert notice.endswith("random-S2-all-I1-C1-r3 (node not known yet, last 13 min ago), and 3 more")
    assert stale_notice({"running": running}, now, 3 * HOUR) is None
    assert stale_notice({"stages": {}}, now, 60) is None  # a snapshot without running trials
    assert "over 2.5 h" in stale_notice({"running": running}, now + 3 * HOUR, 2.5 * HOUR)


# --- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def served(db_url, session, tmp_path, alice, bob, admin):
    """The service's settings over the test's database, a token for each user and jobs of alice and bob."""
    tokens = {user.name: issue_token(session, user) for user in (alice, bob, admin)}
    old = job_with(session, alice, 3.0, created_days_ago=20, ended_days_ago=19, name="old")
    running = job_with(session, alice, 1.5, name="running")
    set_progress(session, running, snapshot(1.5, lost_gpu_h=0.5, running={
        "search-S2-all-I1-C1-r0": {"last_progress_at": time.time() - 2700, "node_id": NODE, "attempt": 2}}),
        stale_after_s=1800)
    bobs = job_with(session, bob, 6.0, name="bobs")
    ids = {"old": old.id, "running": running.id, "bobs": bobs.id}
    settings = Settings(data_dir=tmp_path, database_url=db_url, ray_address="http://127.0.0.1:1",
                        auth="tokens")
    return {"settings": settings, "tokens": tokens, "jobs": ids}


def as_user(served: dict, name: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {served['tokens'][name]}"}}


def test_usage_answers_a_user_their_own_an_admin_anyones_and_refuses_another_users_to_a_user(served):
    answers = call(served["settings"],
                   ("GET", "/v1/usage", as_user(served, "alice")),
                   ("GET", "/v1/usage", {"params": {"user": "bob"}} | as_user(served, "alice")),
                   ("GET", "/v1/usage", {"params": {"user": "bob", "since": "2020-01-01"}}
                    | as_user(served, "root")),
                   ("GET", "/v1/usage", as_user(served, "root")),
                   ("GET", "/v1/usage", {"params": {"since": "last week"}} | as_user(served, "alice")),
                   ("GET", "/v1/usage", {"params": {"user": "nobody"}} | as_user(served, "root")),
                   ("GET", f"/v1/jobs/{served['jobs']['running']}", as_user(served, "alice")))
    own, forbidden, bobs, everyone, bad_since, nobody, job = answers

    assert own.status_code == 200, own.text
    [alice] = own.json()["users"]
    assert alice["user"] == "alice" and alice["gpu_hours"] == pytest.approx(4.5)
    assert alice["lost_gpu_hours"] == pytest.approx(0.5) and alice["cpu_hours"] == pytest.approx(6.0)
    assert [(j["name"], j["status"], j["gpu_hours"]) for j in alice["jobs"]] == [
        ("old", "succeeded", pytest.approx(3.0)), ("running", "running", pytest.approx(1.5))]
    assert set(alice["jobs"][0]) == {"job_id", "name", "status", "created_at", "ended_at", "gpu_hours",
                                     "cpu_hours", "lost_gpu_hours", "lost_cpu_hours"}

    problem = is_problem(forbidden, 403)
    assert "only an admin may see another user's usage ('bob')" in problem["detail"]
    assert bobs.json()["since"].startswith("2020-01-01T00:00:00")  # a date: midnight UTC
    assert [(u["user"], u["gpu_hours"]) for u in bobs.json()["users"]] == [("bob", pytest.approx(6.0))]
    assert [u["user"] for u in everyone.json()["users"]] == ["alice", "bob"]
    assert [e["path"] for e in is_problem(bad_since, 422)["errors"]] == ["query.since"]
    assert "no user 'nobody'" in is_problem(nobody, 404)["detail"]

    shown = job.json()
    assert shown["usage"] == {"gpu_hours": pytest.approx(1.5), "cpu_hours": 0.0,
                              "lost_gpu_hours": pytest.approx(0.5), "lost_cpu_hours": 0.0,
                              "summary": "1.5 GPU-hours, as the driver says"}
    assert shown["notice"].startswith(
        "1 trial without progress for over 30 min: search-S2-all-I1-C1-r0 (node ab12cd34…, last 45 min ago)")
    [trial] = shown["running_trials"]
    assert trial["trial_key"] == "search-S2-all-I1-C1-r0" and trial["node_id"] == NODE


@pytest.mark.service
def test_the_client_prints_usage_per_job_and_a_jobs_hours_notice_and_running_trials(served, monkeypatch):
    from api.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    with serve_app(create_app(served["settings"], reconcile_every=3600)) as port:
        url = f"http://127.0.0.1:{port}"
        auth = ["--server", url, "--token", served["tokens"]["alice"]]
        listed = CliRunner().invoke(app, ["usage", *auth])
        status = CliRunner().invoke(app, ["status", served["jobs"]["running"], *auth])
        refused = CliRunner().invoke(app, ["usage", "--user", "bob", *auth])
    assert listed.exit_code == 0, listed.output
    assert served["jobs"]["old"] in listed.output and served["jobs"]["running"] in listed.output
    assert "4.50" in listed.output and "2 jobs" in listed.output
    assert served["jobs"]["bobs"] not in listed.output
    assert status.exit_code == 0, status.output
    assert "this job so far: 1.5 GPU-hours, as the driver says" in status.output
    assert "notice: 1 trial without progress for over 30 min" in status.output
    assert "search-S2-all-I1-C1-r0" in status.output and "min ago" in status.output
    assert refused.exit_code != 0 and "only an admin may see another user's usage" in refused.output
