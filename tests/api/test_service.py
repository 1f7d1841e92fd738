"""The service end to end: a real uvicorn server on 127.0.0.1, a real local Ray running
every job as a Ray job, a real SQLite job store."""

import io
import json
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.api.live import tiny_grid, wait_for_status

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def alice(live):
    return live.client(live.token("alice"))


@pytest.fixture(scope="module")
def bob(live):
    return live.client(live.token("bob"))


@pytest.fixture(scope="module")
def admin(live):
    return live.client(live.token("root", admin=True))


@pytest.fixture(scope="module")
def finished(alice, store):
    """One job submitted over HTTP and polled to its end."""
    answer = alice.post("/v1/jobs", content=tiny_grid(store, bohb="true"), headers=YAML)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == f"/v1/jobs/{answer.json()['id']}"
    job = wait_for_status(alice, answer.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    return job


def test_a_submitted_grid_runs_as_a_ray_job_and_its_status_counts_every_stage(finished):
    assert finished["ray_job_id"] == f"{finished['id']}-1"
    assert finished["dashboard_url"].endswith(f"/#/jobs/{finished['ray_job_id']}")
    assert finished["started_at"] and finished["ended_at"] and finished["error"] is None
    stages = finished["progress"]
    assert {s: (p["total"], p["succeeded"]) for s, p in stages.items()} == {
        "baselines": (1, 1), "search": (1, 1), "bohb": (3, 3)
    }


def test_trials_page_and_filter_by_stage_and_setting(alice, finished):
    page = alice.get(f"/v1/jobs/{finished['id']}/trials", params={"limit": 2}).json()
    assert page["total"] == 1 + 1 + 1 + 3 and len(page["items"]) == 2
    rest = alice.get(f"/v1/jobs/{finished['id']}/trials", params={"limit": 10, "offset": 2}).json()
    keys = [(t["stage"], t["trial_id"]) for t in page["items"] + rest["items"]]
    assert len(set(keys)) == 6 and keys == sorted(keys)
    search = alice.get(f"/v1/jobs/{finished['id']}/trials",
                       params={"stage": "search", "operators": "S2", "n_inputs": 1}).json()
    assert search["total"] == 1 and search["items"][0]["discretization"] == "all"
    none = alice.get(f"/v1/jobs/{finished['id']}/trials", params={"n_cells": 2}).json()
    assert none["total"] == 0


def test_results_come_as_json_csv_and_parquet_with_the_same_rows(alice, finished):
    url = f"/v1/jobs/{finished['id']}/results"
    rows = alice.get(url, params={"format": "json"}).json()
    assert len(rows) == 6 and {r["job"] for r in rows} == {finished["id"]}
    csv_text = alice.get(url, params={"format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("job,stage,trial_id") and len(csv_text.splitlines()) == 7
    parquet = alice.get(url, params={"format": "parquet", "stage": "bohb"})
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 3 and set(table.column("stage").to_pylist()) == {"bohb"}


def test_per_epoch_results_have_one_row_per_trial_epoch_in_every_format(alice, finished):
    url = f"/v1/jobs/{finished['id']}/epochs"
    rows = alice.get(f"/v1/jobs/{finished['id']}/results").json()
    epochs = alice.get(url).json()
    by_trial: dict[tuple[str, str], list[int]] = {}
    for e in epochs:
        by_trial.setdefault((e["stage"], e["trial_key"]), []).append(e["epoch"])
    assert set(by_trial) == {(r["stage"], r["trial_key"]) for r in rows}
    for (stage, key), numbers in by_trial.items():
        total = next(e["epochs"] for e in epochs if (e["stage"], e["trial_key"]) == (stage, key))
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) <= total, (stage, key)
        if stage != "bohb":  # HyperBand stops some BOHB trials early; every other trial runs to its end
            assert len(numbers) == total, (stage, key)
    search = [e for e in epochs if e["stage"] == "search"]
    assert search and all(e["alpha_entropy"] is not None and e["test_top1"] is None for e in search)
    csv_lines = alice.get(url, params={"format": "csv"}).text.splitlines()
    assert csv_lines[0].startswith("job,stage,trial_key,trial_id,epoch,epochs") and len(csv_lines) == len(epochs) + 1
    table = pq.read_table(io.BytesIO(alice.get(url, params={"format": "parquet", "stage": "search"}).content))
    assert table.num_rows == len(search)


def test_the_job_wrote_its_report_which_the_service_serves_to_its_owner_only(alice, bob, finished):
    job_id = finished["id"]
    assert finished["report_url"] == f"/v1/jobs/{job_id}/report"
    written = Path(finished["storage"]) / "report" / "report.html"
    assert written.is_file() and (Path(finished["storage"]) / "results" / "epochs.parquet").is_file()
    page = alice.get(finished["report_url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == written.read_bytes()
    assert 'id="table-table3_baselines"' in page.text and page.text.count("<svg") >= 3
    assert bob.get(finished["report_url"]).status_code == 404


def test_compare_puts_jobs_side_by_side_from_their_rows(alice, bob, finished):
    job_id = finished["id"]
    rows = alice.get(f"/v1/jobs/{job_id}/results").json()
    answer = alice.get("/v1/compare", params={"jobs": f"{job_id},{job_id}"}).json()
    assert answer["jobs"] == [job_id]  # the same job twice is compared once
    searched = [r for r in rows if r["stage"] == "evaluation" and r["status"] == "succeeded"
                and r["learned"] is not False]
    found = [r for r in answer["rows"] if r["group"] == "searched"]
    assert sum(r["n_0"] for r in found) == len(searched)
    page = alice.get("/v1/compare", params={"jobs": job_id, "format": "html"})
    assert page.status_code == 200 and "<svg" in page.text
    assert alice.get("/v1/compare", params={"jobs": ",".join(f"j{i}" for i in range(9))}).status_code == 422
    assert bob.get("/v1/compare", params={"jobs": job_id}).status_code == 404


def test_best_names_the_best_evaluation_its_genotype_and_bohbs_best_config(alice, finished):
    best = alice.get(f"/v1/jobs/{finished['id']}/best").json()
    assert best["trial"]["stage"] == "evaluation" and best["genotype"]["operators"] == "S2"
    assert set(best["bohb"]["config"]) >= {"batch_size", "lr", "optimizer", "weight_decay"}
    genotype = alice.get(f"/v1/jobs/{finished['id']}/trials/{best['trial']['trial_id']}/genotype").json()
    assert genotype == best["genotype"]


def test_no_token_or_a_bad_token_is_401_another_users_job_is_404_an_admin_sees_it(live, bob, admin, finished):
    job_url = f"/v1/jobs/{finished['id']}"
    anonymous = live.client(None).get(job_url)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["status"] == 401 and "Bearer" in anonymous.json()["detail"]
    assert live.client("adf_not-a-token").get(job_url).status_code == 401
    assert bob.get(job_url).status_code == 404
    assert finished["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["items"]]
    assert admin.get(job_url).json()["owner"] == "alice"


def test_the_same_idempotency_key_gives_the_same_job_and_another_body_conflicts(alice, store):
    body = tiny_grid(store, name="idem")
    headers = {**YAML, "Idempotency-Key": "k-1"}
    first = alice.post("/v1/jobs", content=body, headers=headers)
    again = alice.post("/v1/jobs", content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = alice.post("/v1/jobs", content=tiny_grid(store, name="idem2"), headers=headers)
    assert other.status_code == 409 and "k-1" in other.json()["detail"]
    wait_for_status(alice, first.json()["id"], {"succeeded", "failed"})


@pytest.mark.parametrize(("body", "content_type", "status", "says"), [
    ("name: [unclosed", "application/yaml", 400, "malformed YAML"),
    ("{not json", "application/json", 400, "malformed JSON"),
    ('{"name": "x", "dataset": {"store": "s"}, "space": {"operators": ["S3"]}}', "application/json", 422, "S3"),
    ("name: x", "text/plain", 415, "application/yaml"),
])
def test_bad_bodies_get_problem_json_and_store_nothing(alice, body, content_type, status, says):
    before = alice.get("/v1/jobs").json()["total"]
    answer = alice.post("/v1/jobs", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json" and says in answer.text
    assert alice.get("/v1/jobs").json()["total"] == before


def test_an_invalid_grid_lists_the_path_and_line_of_each_bad_field(alice, store):
    body = tiny_grid(store).replace("cells: [1]", "cells: [7]").replace("repeats: 1", "repeats: 0")
    problems = alice.post("/v1/jobs", content=body, headers=YAML).json()
    paths = {e["path"]: e["line"] for e in problems["errors"]}
    assert "repeats" in paths and paths["repeats"] == 5 and any(p.startswith("space.cells") for p in paths)


def test_an_upload_over_the_limit_is_413_and_an_unknown_job_404(alice):
    big = "name: x\n# " + "x" * 1_100_000
    assert alice.post("/v1/jobs", content=big, headers=YAML).status_code == 413
    missing = alice.get("/v1/jobs/j000000000000")
    assert missing.status_code == 404 and missing.json()["title"] == "Not found"


def test_cancelling_a_finished_job_is_409(alice, finished):
    answer = alice.post(f"/v1/jobs/{finished['id']}/cancel")
    assert answer.status_code == 409 and "succeeded" in answer.json()["detail"]


def test_a_running_job_cancels_its_ray_job_and_its_trials_then_resumes_to_the_end(alice, store, ray_dashboard):
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    body = tiny_grid(store, name="long", discretizations="all, topk", epochs=30)
    job = alice.post("/v1/jobs", content=body, headers=YAML).json()
    deadline = time.time() + 120
    while alice.get(f"/v1/jobs/{job['id']}").json()["progress"].get("search", {}).get("running", 0) == 0:
        assert time.time() < deadline, "the search never started"
        time.sleep(0.5)
    cancelled = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    ray_jobs = JobSubmissionClient(ray_dashboard)
    deadline = time.time() + 60
    while str(ray_jobs.get_job_status(job["ray_job_id"]).value) != "STOPPED" or [
        a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "Trainable" in a.class_name
    ]:
        assert time.time() < deadline, "the Ray job or its trials kept running"
        time.sleep(0.5)

    resumed = alice.post(f"/v1/jobs/{job['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued"
    deadline = time.time() + 60  # the queue admits it once the dashboard reports the cancelled trials' CPUs free
    while alice.get(f"/v1/jobs/{job['id']}").json()["ray_job_id"] != f"{job['id']}-2":
        assert time.time() < deadline, "the resumed job was never admitted"
        time.sleep(0.5)
    done = wait_for_status(alice, job["id"], {"succeeded", "failed"}, timeout=400)
    assert done["status"] == "succeeded", done
    rows = alice.get(f"/v1/jobs/{job['id']}/results").json()
    assert sorted(r["stage"] for r in rows) == ["baselines", "evaluation", "evaluation", "search", "search"]
    assert all(r["status"] == "succeeded" for r in rows)


@pytest.mark.faults
def test_a_killed_server_restarts_and_finds_its_job_reconciled_from_ray(live, alice, store):
    job = alice.post("/v1/jobs", content=tiny_grid(store, name="restart"), headers=YAML).json()
    live.kill()
    with pytest.raises(httpx.HTTPError):
        alice.get("/healthz")
    time.sleep(20)  # the job goes on in Ray while no server runs
    live.start()
    found = wait_for_status(alice, job["id"], {"succeeded", "failed"})
    assert found["status"] == "succeeded" and found["progress"]["search"]["succeeded"] == 1
    assert len(alice.get(f"/v1/jobs/{job['id']}/results").json()) == 3
    assert json.loads(alice.get("/healthz").text) == {"status": "ok", "database": "ok", "ray": "ok"}
