"""Through the service, ``bohb.warm_start`` names the submitter's succeeded jobs with BOHB results by id
(api.service.place_warm_start), and ``reuse_from`` the submitter's succeeded jobs (place_reuse); anything
else is refused naming the entry."""

import pytest

from api.jobstore import replace_trials, set_status
from api.service import DatasetRefused, place_reuse, place_warm_start
from tests.helpers.jobs import result_row, submit
from trials.spec import parse_grid


def warm_grid(*sources: str):
    listed = ", ".join(f"'{source}'" for source in sources)
    return parse_grid(f"name: w\ndataset: {{store: s}}\nbohb: {{warm_start: [{listed}]}}\n")


def succeeded(session, owner, *, bohb: bool = True):
    job, _ = submit(session, owner, name=f"grid-{bohb}")
    set_status(session, job, "running")
    set_status(session, job, "succeeded")
    replace_trials(session, job, [result_row(0, "evaluation"), *([result_row(1, "bohb")] if bohb else [])])
    return job


def test_owned_succeeded_jobs_become_their_storage_dirs_and_anything_else_is_refused_naming_the_entry(
        session, alice, bob, admin):
    first, second = succeeded(session, alice), succeeded(session, alice)
    placed = place_warm_start(session, alice, warm_grid(first.id, second.id))
    assert placed.bohb.warm_start == [first.storage_dir, second.storage_dir]
    assert place_warm_start(session, admin, warm_grid(first.id)).bohb.warm_start == [first.storage_dir]
    plain = parse_grid("name: w\ndataset: {store: s}\n")
    assert place_warm_start(session, alice, plain) is plain

    queued, _ = submit(session, alice, name="queued")
    no_bohb = succeeded(session, alice, bohb=False)
    refusals = [
        ("/srv/adf/runs/other", "name one of your finished jobs by its id"),
        ("s3://bucket/job", "paths and URIs are not taken"),
        (queued.id, f"job {queued.id} is queued: a warm start takes the BOHB results of a succeeded job"),
        (no_bohb.id, f"job {no_bohb.id} has no BOHB results to warm-start from"),
    ]
    for source, says in refusals:
        with pytest.raises(DatasetRefused, match=says) as refused:
            place_warm_start(session, alice, warm_grid(first.id, source))
        assert refused.value.path == "bohb.warm_start[1]"
    with pytest.raises(DatasetRefused, match=f"no job '{first.id}' of yours") as refused:
        place_warm_start(session, bob, warm_grid(first.id))
    assert refused.value.path == "bohb.warm_start[0]"


def test_reuse_from_takes_owned_succeeded_jobs_by_id_and_refuses_anything_else_naming_the_entry(
        session, alice, bob, admin):
    first, second = succeeded(session, alice), succeeded(session, alice, bohb=False)
    grid = parse_grid(f"name: r\ndataset: {{store: s}}\nreuse_from: ['{first.id}', '{second.id}']\n")
    assert place_reuse(session, alice, grid).reuse_from == [first.storage_dir, second.storage_dir]
    assert place_reuse(session, admin, grid).reuse_from == [first.storage_dir, second.storage_dir]
    plain = parse_grid("name: r\ndataset: {store: s}\n")
    assert place_reuse(session, alice, plain) is plain
    queued, _ = submit(session, alice, name="queued")
    for source, says in [("/srv/adf/runs/other", "name one of your finished jobs by its id"),
                         (queued.id, f"job {queued.id} is queued: a job reuses the trials of a succeeded job")]:
        with pytest.raises(DatasetRefused, match=says) as refused:
            place_reuse(session, alice, parse_grid(f"name: r\ndataset: {{store: s}}\nreuse_from: ['{first.id}', '{source}']\n"))
        assert refused.value.path == "reuse_from[1]"
    with pytest.raises(DatasetRefused, match=f"no job '{first.id}' of yours") as refused:
        place_reuse(session, bob, grid)
    assert refused.value.path == "reuse_from[0]"
