"""The REST API against its own OpenAPI schema: schemathesis generates requests for every
operation, valid and invalid, and no answer may be a server error or contradict the
response schema it documents.

In-process (ASGI, the app's lifespan running) over a real SQLite store and a real local
Ray's Jobs API. A finished job with imported result rows gives the result routes data to
serve, a failed one can be resumed; a grid that validates really becomes a Ray job, kept
cheap by a small trial limit and a per-user cap, and its feature store does not exist, so
its driver fails at once.

Error answers are checked too: the schema documents every one as ``application/problem+json``
(api/app.py ``document_problems``).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from adf_service.genotype import random_genotype
from adf_service.space import SearchSpace
from api.app import create_app
from api.auth import create_user, issue_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import create_job, replace_trials, set_status
from api.models import Job
from api.settings import Settings
from api.testing import unrunnable_store
from tests.api.live import UNRUNNABLE_GRID
from trials.config import TrialConfig
from trials.results import RESULT_SCHEMA

MAX_EXAMPLES = 50  # per operation and test; the whole module runs in about 30 s on 2 cores
NO_DEADLINE = settings(deadline=None, suppress_health_check=list(HealthCheck))

TINY_GRID = UNRUNNABLE_GRID  # accepted (2 trials); its store has no features, so its Ray job fails at once
SEEDED = {"seeded-finished": "finished", "seeded-broken": "broken"}  # job id placeholders, filled in per case
TRIALS = ("t_base", "t_search", "t_random")


def result_rows(job_id: str) -> list[dict]:
    """A row per stage shaped like RESULT_SCHEMA (an evaluation shares its search trial's id)."""
    genotype = random_genotype(SearchSpace("S2", 2, 2, channels=16), "topk", random.Random(0)).to_json(indent=None)
    setting = {"operators": "S2", "discretization": "topk", "n_inputs": 2, "n_cells": 2}
    bohb_config = {"batch_size": 16, "lr": 1e-3, "optimizer": "AdamW", "weight_decay": 1e-4, "epochs": 9}
    common = dict.fromkeys(RESULT_SCHEMA.names) | {"job": job_id, "seed": 7, "repeat": 0, "status": "succeeded"}
    search = common | setting | {"trial_id": "t_search", "trial_key": "search-S2-topk-I2-C2-r0", "genotype": genotype}
    rows = [
        common | {"stage": "baselines", "trial_id": "t_base", "trial_key": "baselines-R+F+P-r0",
                  "modalities": "rgb+flow+pose", "val_loss": 1.1, "val_top1": 40.0, "test_top1": 38.5},
        search | {"stage": "search", "val_loss": 0.9, "val_top1": 55.0, "best_epoch": 3},
        search | {"stage": "evaluation", "val_loss": 0.7, "val_top1": 70.0, "test_top1": 68.0, "best_epoch": 5,
                  "fusion_params": 123_456, "total_params": 9_123_456},
        common | setting | {"stage": "random", "trial_id": "t_random", "trial_key": "random-S2-topk-I2-C2-r0",
                            "status": "failed", "error": "RuntimeError: out of memory"},
        common | {"stage": "bohb", "trial_id": "t_bohb", "trial_key": "bohb-0", "val_loss": 0.6, "test_top1": 69.0,
                  "config": TrialConfig(stage="bohb", trial_key="bohb-0", repeat=0, seed=7, store="s",
                                        modalities=None, evaluation=bohb_config).to_json()},
    ]
    for row in rows:  # every row carries its trial's config, as trials.results.trial_rows writes it
        if row["config"] is None:
            stage = "search" if row["stage"] == "evaluation" else row["stage"]
            row["config"] = TrialConfig(stage=stage, trial_key=row["trial_key"], repeat=0, seed=7, store="s",
                                        modalities=None).to_json()
    return rows


def seed_job_files(storage_dir: str, rows: list[dict]) -> None:
    """What a finished job leaves in its storage, for /report and /best/export: its result tables and
    its best evaluation's trial directory (Tune's result.json, its last checkpoint with the weights of
    its best epoch)."""
    from pathlib import Path

    from adf_service.fusion import FusionNetwork
    from adf_service.genotype import Genotype
    from adf_service.train.checkpoint import save_checkpoint
    from trials.results import write_tables
    from trials.storage import JobStorage

    storage = JobStorage.at(storage_dir)
    storage.filesystem.create_dir(storage.path, recursive=True)
    write_tables(storage, rows)
    [evaluation] = [r for r in rows if r["stage"] == "evaluation"]
    genotype = Genotype.from_json(evaluation["genotype"])
    network = FusionNetwork(genotype, [8, 8, 4], 3, 4)
    meta = {"model": "fusion", "channels": 4, "in_channels": [8, 8, 4], "n_classes": 3, "modalities": None}
    checkpoint = Path(storage_dir) / evaluation["trial_key"] / "checkpoint_000005" / "trial.ckpt"
    checkpoint.parent.mkdir(parents=True)
    (checkpoint.parent.parent / "result.json").write_text("")
    save_checkpoint(checkpoint, "trial", {"job": {"evaluation": {"meta": meta, "best_model": network.state_dict()}}})


@pytest.fixture(scope="module")
def service(ray_dashboard, tmp_path_factory) -> Iterator[dict]:
    """The app over a store holding alice, her token, a finished job with result rows and a failed job."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("schema"), ray_address=ray_dashboard, auth="tokens",
        max_grid_trials=8, max_queued_jobs_per_user=2, max_upload_bytes=20_000,
    )
    unrunnable_store(settings.data_dir)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        alice = create_user(s, "alice")
        token = issue_token(s, alice)
        jobs = {}
        for name, end in (("finished", "succeeded"), ("broken", "failed")):
            job, _ = create_job(s, owner=alice, name=name, spec_json=json.dumps(TINY_GRID), request_hash=name,
                                n_trials=2, storage_root=settings.storage_dir)
            set_status(s, job, "running")
            set_status(s, job, end, error="seeded" if end == "failed" else None)
            jobs[name] = job.id
        finished = s.get(Job, jobs["finished"])
        replace_trials(s, finished, result_rows(jobs["finished"]))
        seed_job_files(finished.storage_dir, result_rows(jobs["finished"]))
    engine.dispose()
    # Left idle, the reconciler keeps accepted jobs queued, so max_queued_jobs_per_user
    # caps the Ray jobs this run starts.
    yield {"app": create_app(settings, reconcile_every=3600), "token": token, "jobs": jobs}
    asgi.shutdown_lifespans()  # the app's lifespan, started by its first request


CONFIG = {
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
}
# The schema does not depend on settings: it is read from an app that never starts, and
# every case goes to the module's app.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(ray_address="http://127.0.0.1:1")).openapi(), config=schemathesis.Config.from_dict(CONFIG)
)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    # A generated job id is unknown (404): steer three in four to the seeded jobs, and half the
    # trial ids to the one with a genotype.
    if isinstance(path_parameters, dict) and "name" in path_parameters:  # a user: steer half to the token's
        return st.sampled_from([path_parameters, path_parameters | {"name": "alice"}])
    if not isinstance(path_parameters, dict) or "job_id" not in path_parameters:
        return st.just(path_parameters)
    job_ids = st.sampled_from([*SEEDED, "seeded-finished", path_parameters["job_id"]])
    trial_ids = st.sampled_from([*TRIALS, "t_search", "t_search", path_parameters.get("trial_id")])
    has_trial = "trial_id" in path_parameters
    return st.builds(
        lambda job_id, trial_id: path_parameters | {"job_id": job_id} | ({"trial_id": trial_id} if has_trial else {}),
        job_ids, trial_ids,
    )


@schema.hook
def flatmap_body(context, body):
    # Few generated grids pass the checks beyond the JSON Schema and the trial limit: mix in one that does.
    if isinstance(body, dict):
        return st.sampled_from([body, TINY_GRID])
    if isinstance(body, str):
        return st.sampled_from([body, yaml.safe_dump(TINY_GRID)])
    return st.just(body)


@schema.hook
def flatmap_query(context, query):
    # /v1/compare: a generated job id is unknown (404); steer half the cases to the seeded finished job.
    if isinstance(query, dict) and "jobs" in query:
        return st.sampled_from([query, query | {"jobs": ["seeded-finished"]}])
    if isinstance(query, dict) and isinstance(query.get("repeats"), int):
        # /extend: the seeded finished job must stay as it is for the other operations; 7 or more
        # repeats make its grid bigger than the service's limit of 8 trials (a 422, nothing changes)
        return st.just(query | {"repeats": max(query["repeats"], 7)})
    return st.just(query)


def send(case, service: dict, token: str | None):
    job_id = (case.path_parameters or {}).get("job_id")
    if job_id in SEEDED:
        case.path_parameters["job_id"] = service["jobs"][SEEDED[job_id]]
    jobs = (case.query or {}).get("jobs")
    if isinstance(jobs, list):
        case.query["jobs"] = [service["jobs"][SEEDED[j]] if j in SEEDED else j for j in jobs]
    return case.call(app=service["app"], headers={"Authorization": f"Bearer {token}"} if token else None)


@pytest.fixture(scope="module")
def statuses() -> Iterator[dict[str, set[int]]]:
    """What the generated run answered per operation; once every test of the module that uses it has
    run, in whatever order, a run that tried every operation must have reached each of them."""
    seen: dict[str, set[int]] = defaultdict(set)
    yield seen
    operations = {f"{method.upper()} {path}" for path, methods in schema.raw_schema["paths"].items()
                  for method in methods}
    if set(seen) != operations:
        return  # a partial run (-k, a failure before the end): nothing to check
    reached = {op for op, codes in seen.items() if any(200 <= c < 300 for c in codes)}
    # every seeded job has ended; alice is no admin, and only an admin sets quotas; an extension of
    # the finished job would make the grid bigger than this service's limit of 8 trials
    assert set(seen) - reached == {"POST /v1/jobs/{job_id}/cancel", "PUT /v1/users/{name}/quota",
                                   "POST /v1/jobs/{job_id}/extend"}
    assert 409 in seen["POST /v1/jobs/{job_id}/cancel"] and 403 in seen["PUT /v1/users/{name}/quota"]
    assert {409, 422} <= seen["POST /v1/jobs/{job_id}/extend"]
    assert 202 in seen["POST /v1/jobs"]  # a generated grid was accepted and submitted to Ray


@schema.parametrize()
@NO_DEADLINE
def test_no_request_makes_a_server_error_or_an_answer_off_its_schema(case, service, statuses):
    response = send(case, service, service["token"])
    if case.method == case.operation.method.upper():
        statuses[f"{case.method} {case.path}"].add(response.status_code)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                             content_type_conformance])
    if response.status_code < 400:
        case.validate_response(response, checks=[response_headers_conformance])


@schema.parametrize()
@settings(NO_DEADLINE, max_examples=8)
def test_without_a_token_every_route_but_healthz_is_401_problem_json(case, service):
    response = send(case, service, None)
    if case.method != case.operation.method.upper():  # schemathesis also tries methods the path lacks
        assert response.status_code == 405
        documented = {m.upper() for m in schema.raw_schema["paths"][case.path]}
        assert set(response.headers["allow"][0].split(", ")) == documented
    elif case.path == "/healthz":
        assert response.status_code == 200
    else:
        assert response.status_code == 401, f"{case.method} {case.formatted_path}: {response.text[:500]}"
        assert response.headers["content-type"] == ["application/problem+json"]
        assert response.headers["www-authenticate"] == ["Bearer"]


def test_submissions_over_the_per_user_cap_are_429_and_a_replay_is_not(service):
    def call(path: str, method: str, **kwargs):
        return send(schema[path][method].Case(**kwargs), service, service["token"])

    for status in ("queued", "running"):  # free the cap (2) from what the generated run left
        for job in call("/v1/jobs", "GET", query={"status": status, "limit": 500}).json()["items"]:
            call("/v1/jobs/{job_id}/cancel", "POST", path_parameters={"job_id": job["id"]})

    def post(name: str, key: str):
        return call("/v1/jobs", "POST", body=dict(TINY_GRID, name=name), media_type="application/json",
                    headers={"Idempotency-Key": key})

    answers = [post(f"cap-{i}", key=f"cap-key-{i}") for i in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429], [a.text[:300] for a in answers]
    assert answers[2].headers["content-type"] == ["application/problem+json"]
    assert "alice" in answers[2].json()["detail"]
    replay = post("cap-0", key="cap-key-0")  # a retry of a submission that made its job
    assert replay.status_code == 202 and replay.json()["id"] == answers[0].json()["id"]
