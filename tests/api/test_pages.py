"""Trial pages: a finished job's rows answered from memory, the same as from SQL (SQLite and PostgreSQL)."""

import asyncio
import json

import pytest
from starlette.requests import Request

from api.auth import issue_token
from api.deps import Services, Viewer, Viewers, current_viewer
from api.jobstore import JobNotFound, list_trials, replace_trials, set_progress, set_status
from api.pages import TrialPages
from api.runner import RayJobs
from api.schemas import TrialOut, TrialPage
from api.settings import Settings
from tests.helpers.jobs import result_row, submit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finished_job(session, owner, rows, status="succeeded"):
    job, _ = submit(session, owner)
    set_status(session, job, "running")
    replace_trials(session, job, rows)
    set_status(session, job, status)
    return job


def sql_page(session, job, filters, limit, offset) -> TrialPage:
    rows, total = list_trials(session, job, **filters, limit=limit, offset=offset)
    return TrialPage(items=[TrialOut.of(r) for r in rows], total=total, limit=limit, offset=offset)


ROWS = [result_row(i, stage) for stage in ("search", "evaluation") for i in range(60)] + [
    result_row(200 + i, "baselines", status="failed", error=f"boom {i}", genotype=None) for i in range(9)]
QUERIES = [
    ({}, 100, 0), ({}, 7, 123), ({}, 50, 500),
    ({"stage": "evaluation"}, 10, 5), ({"operators": "S2", "n_cells": 4}, 100, 0),
    ({"stage": "search", "discretization": "topk", "n_inputs": 3}, 3, 1), ({"status": "failed"}, 100, 2),
]


def test_a_finished_jobs_pages_from_memory_equal_the_pages_from_sql(session, alice):
    job = finished_job(session, alice, ROWS)
    pages, viewer = TrialPages(clock=Clock()), Viewer.of(alice)
    assert pages.cached(job.id, viewer, {}, 100, 0) is None
    for filters, limit, offset in QUERIES:
        loaded = pages.load(session, job.id, viewer, filters, limit, offset)
        from_memory = pages.cached(job.id, viewer, filters, limit, offset)
        assert from_memory == loaded
        assert TrialPage.model_validate_json(loaded) == sql_page(session, job, filters, limit, offset)
    assert json.loads(pages.cached(job.id, viewer, {"status": "failed"}, 100, 0))["total"] == 9


def test_another_user_gets_no_page_and_an_admin_gets_it(session, alice, bob, admin):
    job = finished_job(session, alice, ROWS)
    pages = TrialPages(clock=Clock())
    owners_page = pages.load(session, job.id, Viewer.of(alice), {}, 10, 0)
    assert pages.cached(job.id, Viewer.of(bob), {}, 10, 0) is None  # held, but not bob's to see
    with pytest.raises(JobNotFound):
        pages.load(session, job.id, Viewer.of(bob), {}, 10, 0)
    assert pages.cached(job.id, Viewer.of(admin), {}, 10, 0) == owners_page


def test_rows_imported_again_are_served_once_the_entry_is_revalidated(session, alice):
    job = finished_job(session, alice, ROWS, "failed")
    clock, viewer = Clock(), Viewer.of(alice)
    pages = TrialPages(clock=clock, revalidate=2.0)
    before = pages.load(session, job.id, viewer, {}, 100, 0)
    set_status(session, job, "queued")  # resumed: the job's new run imports other rows
    set_status(session, job, "running")
    replace_trials(session, job, [result_row(i, "search", trial_id=f"new{i}") for i in range(4)])
    set_status(session, job, "succeeded")
    clock.now += 1.9
    assert pages.cached(job.id, viewer, {}, 100, 0) == before  # at most `revalidate` seconds old
    clock.now += 0.2
    assert pages.cached(job.id, viewer, {}, 100, 0) is None
    after = TrialPage.model_validate_json(pages.load(session, job.id, viewer, {}, 100, 0))
    assert [t.trial_id for t in after.items] == ["new0", "new1", "new2", "new3"] and after.total == 4
    assert pages.cached(job.id, viewer, {}, 100, 0) == after.model_dump_json().encode()


def test_a_running_jobs_rows_are_held_too_and_a_progress_update_keeps_them(session, alice):
    job, _ = submit(session, alice)
    set_status(session, job, "running")
    replace_trials(session, job, ROWS[:30])  # e.g. a resumed job's earlier rows
    clock, viewer = Clock(), Viewer.of(alice)
    pages = TrialPages(clock=clock)
    page = pages.load(session, job.id, viewer, {}, 10, 5)
    assert TrialPage.model_validate_json(page) == sql_page(session, job, {}, 10, 5)
    set_progress(session, job, {"stages": {"search": {"total": 30, "succeeded": 3}}})  # moves updated_at only
    clock.now += 5
    assert pages.cached(job.id, viewer, {}, 10, 5) is None
    rows_before = pages._jobs[job.id]
    assert pages.load(session, job.id, viewer, {}, 10, 5) == page
    assert pages._jobs[job.id] is rows_before  # revalidated, not reloaded


def test_memory_holds_at_most_max_rows_least_recently_used_jobs_go_first(session, alice):
    jobs = [finished_job(session, alice, ROWS[:50]) for _ in range(3)]
    pages, viewer = TrialPages(clock=Clock(), max_rows=120), Viewer.of(alice)
    for job in jobs[:2]:
        pages.load(session, job.id, viewer, {}, 10, 0)
    assert pages.cached(jobs[0].id, viewer, {}, 10, 0) is not None  # jobs[0] is now the most recent
    pages.load(session, jobs[2].id, viewer, {}, 10, 0)  # 150 rows > 120: the least recent (jobs[1]) goes
    held = [pages.cached(job.id, viewer, {}, 10, 0) is not None for job in jobs]
    assert held == [True, False, True]
    big = finished_job(session, alice, ROWS)  # 129 rows: more than max_rows, never held
    pages.load(session, big.id, viewer, {}, 10, 0)
    assert pages.cached(big.id, viewer, {}, 10, 0) is None


def test_viewers_remember_a_token_for_ttl_seconds():
    clock = Clock()
    viewers = Viewers(ttl=5.0, clock=clock)
    alice = Viewer(1, "alice", False)
    viewers.put("hash-a", alice)
    clock.now += 4.9
    assert viewers.get("hash-a") == alice and viewers.get("hash-b") is None
    clock.now += 0.2
    assert viewers.get("hash-a") is None


def test_stale_rows_send_one_request_to_the_store_and_answer_the_others_meanwhile(session, alice):
    job = finished_job(session, alice, ROWS)
    clock, viewer = Clock(), Viewer.of(alice)
    pages = TrialPages(clock=clock, revalidate=2.0)
    page = pages.load(session, job.id, viewer, {}, 10, 0)
    clock.now += 2.5
    assert pages.cached(job.id, viewer, {}, 10, 0) is None  # this one asks the store ...
    assert pages.cached(job.id, viewer, {}, 10, 0) == page  # ... the others need not wait for it
    assert pages.load(session, job.id, viewer, {}, 10, 0) == page
    clock.now += 1.0
    assert pages.cached(job.id, viewer, {}, 10, 0) == page  # confirmed 1 s ago: fresh


def test_requests_that_miss_the_token_cache_together_share_one_store_lookup(sessions, session, alice):
    token = issue_token(session, alice)
    opened = []

    def counting_sessions():
        opened.append(1)
        return sessions()

    services = Services(Settings(ray_address="http://127.0.0.1:1"), counting_sessions, RayJobs("http://127.0.0.1:1"),
                        None)
    request = Request({"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]})

    async def twenty() -> list[Viewer]:
        return await asyncio.gather(*(current_viewer(request, services) for _ in range(20)))

    assert asyncio.run(twenty()) == [Viewer.of(alice)] * 20
    assert len(opened) == 1
    bad = Request({"type": "http", "headers": [(b"authorization", b"Bearer adf_nope")]})

    async def two_bad() -> list:
        return await asyncio.gather(*(current_viewer(bad, services) for _ in range(2)), return_exceptions=True)

    assert [getattr(e, "status", None) for e in asyncio.run(two_bad())] == [401, 401]
    assert len(opened) == 2  # unknown tokens are not remembered, but the two shared a lookup
