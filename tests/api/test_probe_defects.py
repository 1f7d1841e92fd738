"""What an outside probe broke (issue 11 items 1-4), over HTTP: every hostile grid of the corpus
is a 4xx problem+json, a slow parse never holds up /healthz, a store outside the data roots or
without the grid's modalities is refused at submit, and no id is echoed whole.

The app runs in this process (its own SQLite store, no Ray: nothing here gets as far as
starting a job); the one test of the HTTP layer itself runs it under a real uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adf_service.features import generate_synthetic_store
from api.app import create_app
from api.settings import Settings
from tests.helpers.served import served
from tests.trials.test_bad_grid_corpus import CASES as GRID_CASES
from tests.trials.test_bad_grid_corpus import case_text

CORPUS = Path(__file__).parents[1] / "corpus" / "api"
STORE_CASES = json.loads((CORPUS / "stores.json").read_text())["cases"]
PATH_CASES = json.loads((CORPUS / "paths.json").read_text())["cases"]
BASE_GRID = {"name": "probe", "repeats": 1, "random": {"enabled": False}, "bohb": {"enabled": False},
             "space": {"operators": ["S2"], "discretizations": ["all"], "inputs": [1], "cells": [1], "channels": 8},
             "resources": {"gpus_per_trial": 0, "cpus_per_trial": 1}}
MEDIA = {".yaml": "application/yaml", ".json": "application/json"}


def settings_at(data_dir: Path, **extra) -> Settings:
    return Settings(data_dir=data_dir, ray_address="http://127.0.0.1:1", auth="local", **extra)


def call(settings: Settings, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    """The requests sent at once to a fresh app over ``settings``; their answers, in order."""
    app = create_app(settings, reconcile_every=3600)

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                return await asyncio.gather(*(client.request(m, url, **kw) for m, url, kw in requests))

    return asyncio.run(run())


def is_problem(answer: httpx.Response, *statuses: int) -> dict:
    assert answer.status_code in statuses, answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.json()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A service's data_dir with a symlink to /etc and a store with rgb and flow only."""
    root = tmp_path_factory.mktemp("probe")
    (root / "link-to-etc").symlink_to("/etc")
    full = generate_synthetic_store(root / "full-store", n_train=4, n_test=2, n_classes=2, n_train_views=1)
    manifest = json.loads((full.path / "manifest.json").read_text())
    partial = root / "rgb-flow-store"
    partial.mkdir()
    manifest["modalities"] = ["rgb", "flow"]
    manifest["shapes"] = {m: manifest["shapes"][m] for m in ("rgb", "flow")}
    (partial / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_every_hostile_grid_of_the_corpus_is_a_4xx_problem_naming_it(data_dir):
    requests = [("POST", "/v1/jobs", {"content": case_text(case).encode(),
                                      "headers": {"content-type": MEDIA[Path(case["file"]).suffix]}})
                for case in GRID_CASES]
    answers = call(settings_at(data_dir), *requests)
    for case, answer in zip(GRID_CASES, answers):
        problem = is_problem(answer, 400, 413, 422)
        # The corpus' parser named the file; here the source is "request body".
        expect = re.sub(r"^(\S+\.(yaml|json) )?(line \d+: )?|^\S+\.(yaml|json): ", "", case["expect"])
        assert expect in problem["detail"], (case["file"], problem["detail"][:300])
        assert len(problem.get("errors") or []) <= 50 and len(answer.content) < 20_000, case["file"]


@pytest.mark.parametrize("case", STORE_CASES, ids=[case["name"] for case in STORE_CASES])
def test_a_store_outside_the_data_roots_or_without_the_grids_modalities_is_refused_at_submit(data_dir, case):
    grid = BASE_GRID | {k: v for k, v in case.items() if k not in ("name", "path", "expect")}
    [answer] = call(settings_at(data_dir), ("POST", "/v1/jobs", {"json": grid}))
    problem = is_problem(answer, 422)
    assert [e["path"] for e in problem["errors"]] == [case["path"]]
    assert case["expect"] in problem["detail"], problem["detail"]
    if case["path"] == "dataset.store" and "://" not in case["dataset"]["store"]:
        assert str(data_dir.resolve()) in problem["detail"] or "no feature store" in problem["detail"]
    [jobs] = call(settings_at(data_dir), ("GET", "/v1/jobs", {}))
    assert jobs.json()["total"] == 0  # nothing was stored


def test_the_refusal_names_every_configured_data_root(data_dir, tmp_path):
    settings = settings_at(data_dir, data_roots=[tmp_path / "a", tmp_path / "b"])
    [answer] = call(settings, ("POST", "/v1/jobs", {"json": BASE_GRID | {"dataset": {"store": str(data_dir)}}}))
    detail = is_problem(answer, 422)["detail"]
    assert f"{tmp_path / 'a'}, {tmp_path / 'b'}" in detail and "ADF_DATA_ROOTS" in detail


def test_a_store_under_a_data_root_is_accepted_resolved(data_dir, tmp_path):
    """The check lets through what it should: a store under a root, named through a symlink inside it."""
    (tmp_path / "alias").symlink_to(data_dir / "full-store")
    settings = settings_at(tmp_path / "service", data_roots=[data_dir, tmp_path])
    from api.service import server_spec
    from trials.spec import validate_grid

    spec = server_spec(validate_grid(BASE_GRID | {"dataset": {"store": str(tmp_path / "alias")}}), settings)
    assert spec.dataset.store == str((data_dir / "full-store").resolve())


def test_healthz_answers_while_a_grid_is_being_read_and_a_slow_read_is_refused(data_dir, monkeypatch):
    import api.routes.jobs as jobs

    def slow_parse(text: str, source: str):  # a body that takes 3 s to read, holding its thread
        time.sleep(3)
        raise AssertionError("the parse budget should have ended the request first")

    monkeypatch.setattr(jobs, "parse_grid_with_lines", slow_parse)
    settings = settings_at(data_dir, parse_seconds=1.5)
    app = create_app(settings, reconcile_every=3600)

    async def run() -> tuple[httpx.Response, float, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                post = asyncio.ensure_future(client.post("/v1/jobs", content=b"name: slow\n",
                                                         headers={"content-type": "application/yaml"}))
                await asyncio.sleep(0.3)  # the parse has started
                start = time.monotonic()
                health = await client.get("/healthz")
                waited = time.monotonic() - start
                assert not post.done()  # /healthz answered while the parse went on
                return health, waited, await post

    health, waited, posted = asyncio.run(run())
    assert health.status_code == 200 and waited < 1.0, waited
    problem = is_problem(posted, 422)
    assert "longer than 1.5 s" in problem["detail"]


def case_path(case: dict) -> str:
    return case["prefix"] + case["unit"] * case["times"] + case["suffix"]


APP_PATHS = [case for case in PATH_CASES if case["layer"] == "app"]
HTTP_PATHS = [case for case in PATH_CASES if case["layer"] == "http"]


@pytest.mark.parametrize("case", APP_PATHS, ids=[case["name"] for case in APP_PATHS])
def test_an_id_in_the_path_is_echoed_cut_to_64_characters(data_dir, case):
    method = "POST" if case["suffix"].endswith("/cancel") else "GET"
    [answer] = call(settings_at(data_dir), (method, case_path(case), {}))
    problem = is_problem(answer, case["status"])
    assert len(problem["detail"]) < 200 and f"({case['times']:,} characters)" in problem["detail"], problem["detail"]


@pytest.fixture
def uvicorn_server(data_dir) -> Iterator[int]:
    """The app under a real uvicorn on 127.0.0.1 with the service's HTTP protocol; its port."""
    with served(create_app(settings_at(data_dir))) as port:
        yield port


def raw_get(port: int, path: str) -> tuple[str, dict[str, str], bytes]:
    """GET over a plain socket (httpx refuses URLs over 64 KiB): status line, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


@pytest.mark.service
def test_a_request_the_http_layer_cannot_read_is_a_400_problem_too(uvicorn_server):
    for case in HTTP_PATHS:
        status, headers, body = raw_get(uvicorn_server, case_path(case))
        assert status.startswith(f"HTTP/1.1 {case['status']}"), (case["name"], status)
        assert headers["content-type"] == "application/problem+json", case["name"]
        problem = json.loads(body)
        assert problem["status"] == 400 and "could not be read" in problem["detail"] and len(body) < 500
    status, headers, body = raw_get(uvicorn_server, case_path(APP_PATHS[0]))  # read by the app: a 404, cut short
    assert status.startswith("HTTP/1.1 404") and len(json.loads(body)["detail"]) < 200
