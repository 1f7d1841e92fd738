"""Through the service, a transfer names one of the submitter's succeeded jobs by id (api.service.place_transfer)."""

import pytest

from api.jobstore import set_status
from api.service import DatasetRefused, place_transfer
from tests.helpers.jobs import submit
from trials.spec import parse_grid


def transfer_grid(source: str):
    return parse_grid(f"name: t\ndataset: {{store: s}}\nsearch: {{enabled: false}}\n"
                      f"transfer: {{enabled: true, from_job: '{source}'}}\n")


def test_a_succeeded_job_of_the_submitters_becomes_its_storage_directory(session, alice, admin):
    job, _ = submit(session, alice)
    set_status(session, job, "running")
    set_status(session, job, "succeeded")
    placed = place_transfer(session, alice, transfer_grid(job.id))
    assert placed.transfer.from_job == job.storage_dir
    assert place_transfer(session, admin, transfer_grid(job.id)).transfer.from_job == job.storage_dir
    off = parse_grid("name: t\ndataset: {store: s}\n")
    assert place_transfer(session, alice, off) is off


@pytest.mark.parametrize("source, says", [
    ("/srv/adf/runs/other", "name one of your finished jobs by its id"),
    ("file:///etc", "paths and URIs are not taken"),
    ("../alice-job", "name one of your finished jobs by its id"),
    ("j000000000000", "no job 'j000000000000' of yours"),
])
def test_paths_uris_and_unknown_ids_are_refused_naming_the_key(session, alice, source, says):
    with pytest.raises(DatasetRefused, match=says) as refused:
        place_transfer(session, alice, transfer_grid(source))
    assert refused.value.path == "transfer.from_job"


def test_another_users_job_or_an_unfinished_one_is_refused(session, alice, bob):
    job, _ = submit(session, alice)
    with pytest.raises(DatasetRefused, match=f"job {job.id} is queued"):
        place_transfer(session, alice, transfer_grid(job.id))
    set_status(session, job, "running")
    set_status(session, job, "succeeded")
    with pytest.raises(DatasetRefused, match=f"no job '{job.id}' of yours"):
        place_transfer(session, bob, transfer_grid(job.id))
