"""A job's lease (issue 11 item 5): when a newer attempt of a job claims it, an older driver that
still runs stops writing to the job at once and ends with Fenced, leaving what the new one wrote."""

import json
import threading
import time

import pytest

from trials.pipeline import run_grid
from trials.spec import parse_grid
from trials.storage import Fenced, JobStorage, claim_lease, lease_holder

GRID = """
name: lease
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 40, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{enabled: false}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
storage: {storage}
"""


def test_claiming_a_lease_refuses_an_older_attempt(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    assert lease_holder(storage) is None
    claim_lease(storage, 2)
    claim_lease(storage, 2)  # the same attempt again (a driver restarted by Ray) is fine
    with pytest.raises(Fenced, match="attempt 2 of job job has started; this driver \\(attempt 1\\) stops"):
        claim_lease(storage, 1)
    claim_lease(storage, 3)
    assert lease_holder(storage) == 3


def test_an_older_driver_stops_writing_once_a_newer_attempt_claims_the_job(local_ray, store, tmp_path):
    spec = parse_grid(GRID.format(store=store.path, storage=tmp_path))
    raised: list[BaseException] = []

    def old_driver() -> None:
        try:
            run_grid(spec, job_id="job", show_progress=False, attempt=1)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what ended it
            raised.append(exc)

    driver = threading.Thread(target=old_driver)
    driver.start()
    progress = tmp_path / "job" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "job").glob("search-*/checkpoint_000001")):
        time.sleep(0.2)
    assert json.loads(progress.read_text())["attempt"] == 1

    claim_lease(JobStorage.of(str(tmp_path), "job"), 2)  # a newer driver of the job has started
    time.sleep(0.5)  # a write the old driver checked the lease for just before the claim has landed
    marker = {"stages": {}, "attempt": 2, "written_by": "the new driver"}
    progress.write_text(json.dumps(marker))
    driver.join(timeout=60)

    assert not driver.is_alive(), "the old driver went on after a newer attempt claimed the job"
    assert len(raised) == 1 and isinstance(raised[0], Fenced), raised
    assert json.loads(progress.read_text()) == marker  # nothing written over the new driver's file
    assert not (tmp_path / "job" / "results").exists()
