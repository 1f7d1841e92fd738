"""Rerun and extend through the service (issue 15 item 4): REST, the queue, a real driver on a local Ray.

The drivers' own behaviour (a rerun that succeeds once a transient cause is gone; an extension
refused when more than the repeats changed) is tested in tests/trials/test_rerun_extend.py.
"""

from __future__ import annotations

import time

import pytest

from tests.api.live import tiny_grid, wait_for_status

pytestmark = [pytest.mark.ray, pytest.mark.service, pytest.mark.faults, pytest.mark.timeout(600)]

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def alice(live):
    return live.client(live.token("alice"))


def rows_by_trial(client, job_id: str) -> dict[tuple[str, str], dict]:
    rows = client.get(f"/v1/jobs/{job_id}/results").json()
    by_trial = {(r["stage"], r["trial_key"]): r for r in rows}
    assert len(by_trial) == len(rows)  # every trial's row once
    return by_trial


def test_extending_a_succeeded_job_runs_only_the_new_repeats_and_keeps_every_row(alice, store):
    job = alice.post("/v1/jobs", content=tiny_grid(store, name="extended"), headers=YAML).json()
    assert wait_for_status(alice, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    before = rows_by_trial(alice, job["id"])

    answer = alice.post(f"/v1/jobs/{job['id']}/extend", params={"repeats": 1})
    assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
    assert answer.json()["n_trials"] == job["n_trials"] + 1
    ended = wait_for_status(alice, job["id"], {"succeeded", "failed"})
    assert ended["status"] == "succeeded", ended
    assert [(a["by"], a.get("mode")) for a in ended["attempts"]] == [("service", None), ("alice", "extend")]
    after = rows_by_trial(alice, job["id"])
    assert {key: after[key] for key in before} == before  # what the job had is kept, value for value
    new = {key: row for key, row in after.items() if key not in before}
    assert sorted(new) == [("evaluation", "search-S2-all-I1-C1-r1"), ("search", "search-S2-all-I1-C1-r1")]
    assert all(r["status"] == "succeeded" and r["repeat"] == 1 for r in new.values())
    old_seed = before[("search", "search-S2-all-I1-C1-r0")]["seed"]
    assert new[("search", "search-S2-all-I1-C1-r1")]["seed"] != old_seed  # a new repeat, a new seed

    refused = alice.post(f"/v1/jobs/{job['id']}/rerun")
    assert refused.status_code == 409 and "no failed trial" in refused.json()["detail"]


def test_a_rerun_of_a_cancelled_job_runs_its_unfinished_trials_and_keeps_the_finished_ones(alice, store):
    job = alice.post("/v1/jobs", content=tiny_grid(store, name="rerun", epochs=60), headers=YAML).json()
    deadline = time.time() + 240
    while True:  # the baseline done, the searches not: cancel
        progress = alice.get(f"/v1/jobs/{job['id']}").json()["progress"]
        if progress.get("baselines", {}).get("succeeded") == 1 and progress.get("search", {}).get("succeeded") == 0:
            break
        assert time.time() < deadline, progress
        time.sleep(0.3)
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    cancelled_at = time.time()

    answer = alice.post(f"/v1/jobs/{job['id']}/rerun", params={"failed": "true"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["attempts"][-1]["reason"] == "rerun of its unfinished trials"
    ended = wait_for_status(alice, job["id"], {"succeeded", "failed"}, timeout=400)
    assert ended["status"] == "succeeded" and ended["attempts"][-1]["mode"] == "rerun", ended
    rows = rows_by_trial(alice, job["id"])
    assert len(rows) == 3 and all(r["status"] == "succeeded" for r in rows.values())  # baseline, search, evaluation
    epochs = alice.get(f"/v1/jobs/{job['id']}/epochs").json()
    baseline = [e for e in epochs if e["stage"] == "baselines"]
    assert baseline and all(e["timestamp"] < cancelled_at for e in baseline)  # kept, not run again
    assert any(e["timestamp"] > cancelled_at for e in epochs if e["stage"] == "search")
