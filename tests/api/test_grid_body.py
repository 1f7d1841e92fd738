"""POST /v1/jobs reads its body once: a YAML grid is parsed by one call of trials.spec.parse_grid,
and what is no YAML at all (400) stays apart from a grid that does not validate (422)."""

import asyncio
from types import SimpleNamespace

import pytest
import yaml.composer
from starlette.requests import Request

from api.problems import Problem
from api.routes.jobs import _read_grid
from api.settings import Settings

GRID = ("name: tiny\ndataset: {store: features/x, synthetic: {clips: 40}}\n"
        "space: {operators: [S2], inputs: [1], cells: [1]}\n")
JSON_GRID = '{"name": "j", "dataset": {"store": "s", "synthetic": {"clips": 40}}}'


def read(body: str, content_type: str = "application/yaml", limit: int = 100_000):
    async def receive():
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "query_string": b"",
             "headers": [(b"content-type", content_type.encode())]}
    settings = Settings(data_dir="/tmp/adf-grid-body", max_upload_bytes=limit)
    spec, _ = asyncio.run(_read_grid(Request(scope, receive), SimpleNamespace(settings=settings, parse_limiter=None)))
    return spec


def problem(body: str, content_type: str = "application/yaml") -> Problem:
    with pytest.raises(Problem) as raised:
        read(body, content_type)
    return raised.value


def test_a_yaml_grid_is_composed_once(monkeypatch):
    calls = []
    compose = yaml.composer.Composer.get_single_node

    def counted(self):
        calls.append(1)
        return compose(self)

    monkeypatch.setattr(yaml.composer.Composer, "get_single_node", counted)
    spec = read(GRID)
    assert spec.name == "tiny" and spec.space.operators == ["S2"]
    assert len(calls) == 1


@pytest.mark.parametrize(("body", "says"), [
    ("name: [unclosed", "YAML syntax error"),
    ("name: a\nname: b\n", "given twice"),
])
def test_text_that_is_no_yaml_grid_is_400_malformed_yaml(body, says):
    answer = problem(body)
    assert answer.status == 400 and answer.detail.startswith("malformed YAML") and says in answer.detail


@pytest.mark.parametrize(("body", "path"), [
    (GRID.replace("[S2]", "[S3]"), "space.operators[0]"),
    ("- a list\n", ""),
    (GRID.replace("name: tiny", "name: tiny\nrepeats: 0"), "repeats"),
])
def test_a_grid_that_does_not_validate_is_422_with_its_fields(body, path):
    answer = problem(body)
    assert answer.status == 422 and path in [e["path"] for e in answer.extra["errors"]]


def test_json_and_other_media_types_are_answered_as_before():
    assert read(JSON_GRID, "application/json").name == "j"
    assert problem("{not json", "application/json").status == 400
    assert problem(GRID, "text/plain").status == 415
    with pytest.raises(Problem) as raised:
        read(GRID, limit=10)
    assert raised.value.status == 413
