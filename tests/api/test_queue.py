"""The queue's decisions (api/queue.py) against a fake cluster: order, quotas, room, backoff."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api.queue import Candidate, Holding, NeverFits, Quota, never_fits, plan_admissions, quota_for

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def job(job_id: str, user: str = "alice", *, priority: int = 0, minute: int = 0, gpus: float = 1.0,
        cpus: float = 1.0, n_trials: int = 8, max_concurrent: int | None = None,
        not_before: datetime | None = None) -> Candidate:
    return Candidate(job_id, user, priority, NOW + timedelta(minutes=minute), gpus, cpus, n_trials, max_concurrent,
                     not_before)


def plan(queued, *, holdings=(), quotas=None, used=None, free=({"GPU": 8.0, "CPU": 64.0},), total_gpus=8.0):
    users = {j.user for j in queued} | {h.user for h in holdings}
    quotas = quotas or {}
    answers = plan_admissions(queued, list(holdings), {u: quotas.get(u, Quota(running_jobs=10)) for u in users},
                              used or {}, free, now=NOW, total_gpus=total_gpus)
    return {a.job_id: a for a in answers}, [a.job_id for a in answers]


def test_higher_priority_first_then_submission_order():
    queued = [job("late", minute=2), job("early", minute=1), job("urgent", priority=5, minute=3)]
    answers, order = plan(queued)
    assert order == ["urgent", "early", "late"]
    assert all(a.admit for a in answers.values())


def test_a_job_waits_for_room_and_every_job_behind_it_waits_too():
    queued = [job("big", gpus=1.0, minute=1), job("small", gpus=0.25, minute=2)]
    answers, _ = plan(queued, free=[{"GPU": 0.5, "CPU": 8.0}])
    assert not answers["big"].admit and "waiting for room" in answers["big"].reason
    assert "0.5 GPU and 8 CPU free on 1 node" in answers["big"].reason
    assert not answers["small"].admit and "behind job big" in answers["small"].reason


def test_room_is_per_node_and_used_up_by_this_rounds_admissions():
    queued = [job(f"j{i}", minute=i) for i in range(3)]
    answers, _ = plan(queued, free=[{"GPU": 1.0, "CPU": 2.0}, {"GPU": 1.0, "CPU": 2.0}, {"GPU": 0.5, "CPU": 9.0}])
    assert [answers[f"j{i}"].admit for i in range(3)] == [True, True, False]


def test_half_a_gpu_on_each_of_two_nodes_is_no_room_for_a_whole_gpu_trial():
    answers, _ = plan([job("one")], free=[{"GPU": 0.5, "CPU": 4.0}, {"GPU": 0.5, "CPU": 4.0}])
    assert not answers["one"].admit


def test_no_cluster_view_admits_on_quotas_alone():
    answers, _ = plan([job("a"), job("b", minute=1)], free=None)
    assert answers["a"].admit and answers["b"].admit


def test_running_jobs_quota_holds_a_users_next_job_but_not_another_users():
    queued = [job("a2", "alice", minute=1), job("b1", "bob", minute=2)]
    answers, _ = plan(queued, holdings=[Holding("alice", 1.0)], quotas={"alice": Quota(running_jobs=1)})
    assert not answers["a2"].admit and answers["a2"].reason == "over quota: user 'alice' runs 1 of 1 jobs at once"
    assert answers["b1"].admit  # a quota wait does not hold the queue


def test_jobs_admitted_in_one_round_count_against_the_quota():
    answers, _ = plan([job("a1"), job("a2", minute=1)], quotas={"alice": Quota(running_jobs=1)})
    assert answers["a1"].admit and not answers["a2"].admit


def test_gpu_quota_caps_a_jobs_trials_at_once_to_what_is_left():
    answers, _ = plan([job("a", gpus=0.5, n_trials=20)], holdings=[Holding("alice", 1.0)],
                      quotas={"alice": Quota(running_jobs=5, gpus=3.0)})
    assert answers["a"].admit
    assert answers["a"].max_concurrent == 4 and answers["a"].gpus == pytest.approx(2.0)


def test_the_grids_own_max_concurrent_trials_is_kept_when_lower():
    answers, _ = plan([job("a", gpus=1.0, max_concurrent=2)], quotas={"alice": Quota(running_jobs=5, gpus=4.0)})
    assert (answers["a"].max_concurrent, answers["a"].gpus) == (2, 2.0)


def test_a_job_without_any_limit_holds_at_most_the_clusters_gpus():
    answers, _ = plan([job("a", gpus=1.0, n_trials=300)], total_gpus=8.0)
    assert answers["a"].max_concurrent is None and answers["a"].gpus == 8.0


def test_a_user_at_the_gpu_quota_waits_with_the_reason():
    answers, _ = plan([job("a")], holdings=[Holding("alice", 2.0)], quotas={"alice": Quota(running_jobs=5, gpus=2.0)})
    assert not answers["a"].admit
    assert answers["a"].reason == "over quota: user 'alice' holds 2 of 2 GPU at once, and a trial asks for 1"


def test_gpu_hours_quota_holds_gpu_jobs_and_lets_cpu_jobs_run():
    queued = [job("gpu"), job("cpu", gpus=0.0, minute=1)]
    answers, _ = plan(queued, quotas={"alice": Quota(running_jobs=5, gpu_hours=10.0)}, used={"alice": 10.5})
    assert not answers["gpu"].admit and "used 10.5 of 10 GPU-hours in the last 30 days" in answers["gpu"].reason
    assert answers["cpu"].admit


def test_a_resume_in_backoff_waits_until_its_time_without_holding_the_queue():
    queued = [job("resuming", minute=0, not_before=NOW + timedelta(seconds=30)), job("next", minute=1)]
    answers, _ = plan(queued)
    assert not answers["resuming"].admit and answers["resuming"].reason.startswith("resumes automatically at 12:00:30")
    assert answers["next"].admit
    answers, _ = plan([job("resuming", not_before=NOW - timedelta(seconds=1))])
    assert answers["resuming"].admit


def test_an_admins_per_user_setting_overrides_the_default_and_none_keeps_it():
    default = Quota(running_jobs=4, gpus=8.0, gpu_hours=100.0)
    assert quota_for(default, 1, None, 5.0) == Quota(1, 8.0, 5.0)
    assert quota_for(default, None, None, None) == default


def test_a_trial_bigger_than_the_users_gpu_quota_can_never_run():
    with pytest.raises(NeverFits, match="asks for 2 GPU, and user 'alice' may hold 1 GPU at once") as caught:
        never_fits(2.0, Quota(running_jobs=4, gpus=1.0), "alice")
    assert caught.value.path == "resources.gpus_per_trial"
    never_fits(1.0, Quota(running_jobs=4, gpus=1.0), "alice")  # fits exactly
    with pytest.raises(NeverFits, match="0 GPU-hours"):
        never_fits(0.5, Quota(running_jobs=4, gpu_hours=0.0), "alice")
    never_fits(0.0, Quota(running_jobs=4, gpu_hours=0.0), "alice")  # CPU trials run
