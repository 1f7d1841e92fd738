"""The REST API as a state machine (issue 16 item 4): schemathesis chains its operations through the
links between them (a job's ``id`` from POST /v1/jobs into GET /v1/jobs/{job_id}, /cancel, /resume,
/rerun, /extend, /trials, ...) and no step may answer a server error or contradict its schema.

The app has no hand-written OpenAPI links: schemathesis (4.1 and later) infers them from the schema,
a response's ``id`` matched to a path's ``job_id``; the first test pins the links this run relies on,
so that a change of the schema that loses them fails here rather than quietly testing less.

In this process over a real SQLite store; the Ray address answers nothing, so a submitted grid
stays queued (no job starts) and cancel, resume, rerun and extend act on the store alone.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    use_after_free,
)

from api.app import create_app
from api.auth import create_user, issue_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID, unrunnable_store

NOWHERE = "http://127.0.0.1:1"  # a Ray dashboard address nothing answers at
RUN = settings(max_examples=40, stateful_step_count=10, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
LINKED = {"GET /v1/jobs/{job_id}", "POST /v1/jobs/{job_id}/cancel", "POST /v1/jobs/{job_id}/resume",
          "POST /v1/jobs/{job_id}/rerun", "POST /v1/jobs/{job_id}/extend", "GET /v1/jobs/{job_id}/trials"}

schema = schemathesis.openapi.from_dict(
    create_app(Settings(ray_address=NOWHERE)).openapi(),
    config=schemathesis.Config.from_dict({"generation": {"mode": "all", "database": "none"}}),
)


@schema.hook
def flatmap_body(context, body):
    # Few generated grids get past the checks beyond the JSON Schema: three in four are one that does,
    # so that jobs exist for the links to lead to.
    if isinstance(body, dict):
        return st.sampled_from([body, UNRUNNABLE_GRID, UNRUNNABLE_GRID, UNRUNNABLE_GRID])
    if isinstance(body, str):
        return st.sampled_from([body, *[yaml.safe_dump(UNRUNNABLE_GRID)] * 3])
    return st.just(body)


def fresh_service(data_dir: Path) -> tuple[object, str]:
    """The app over a new store holding alice and her token (a user, not an admin)."""
    settings = Settings(data_dir=data_dir, ray_address=NOWHERE, auth="tokens",
                        max_grid_trials=8, max_queued_jobs_per_user=100_000)
    unrunnable_store(settings.data_dir)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        token = issue_token(s, create_user(s, "alice"))
    engine.dispose()
    return create_app(settings, reconcile_every=3600), token


def test_the_links_the_state_machine_follows_are_inferred_from_the_schema():
    machine = schema.as_state_machine()  # schemathesis 4 keeps the links it inferred in its transitions
    links = {(link.source.label, link.target.label, str(link.status_code),
              tuple(p.expression for p in link.parameters))
             for link in machine._transitions.operations["POST /v1/jobs"].outgoing}
    followed = {target for source, target, status, expressions in links
                if status == "202" and expressions == ("$response.body#/id",)}
    assert LINKED <= followed, LINKED - followed


def test_no_sequence_of_calls_makes_a_server_error_or_an_answer_off_its_schema(tmp_path):
    seen: Counter[tuple[str, int]] = Counter()
    made: set[str] = set()  # the ids of the jobs the run's POST /v1/jobs made
    reached: Counter[str] = Counter()  # calls on one of those jobs, by operation
    sequences = itertools.count()

    class Workflow(schema.as_state_machine()):
        # Each sequence, and each replay of one while Hypothesis shrinks it, meets a store of its own:
        # with one store for the whole run a replay met the jobs (and idempotency keys) of the sequences
        # before it, answered otherwise, and Hypothesis called the strategy flaky.
        def setup(self):
            self.app, self.token = fresh_service(tmp_path / f"sequence-{next(sequences)}")

        def teardown(self):
            asgi.shutdown_lifespans()  # the app's lifespan, started by its first request

        def get_call_kwargs(self, case):
            return {"app": self.app, "headers": {"Authorization": f"Bearer {self.token}"}}

        def after_call(self, response, case):
            operation = f"{case.method} {case.operation.path}"
            seen[operation, response.status_code] += 1
            if operation == "POST /v1/jobs" and response.status_code == 202:
                made.add(response.json()["id"])
            elif (case.path_parameters or {}).get("job_id") in made:
                reached[operation] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                     content_type_conformance, use_after_free])

    Workflow.run(settings=RUN)
    # The chains reached jobs that the run made, through the links, with reads and with changes of state
    # (which calls Hypothesis chains varies with the schema; that they reach made jobs must not)
    assert made and sum(reached.values()) >= 5, (sorted(seen.items()), reached)
    assert len(reached) >= 3, reached
    assert set(reached) & {"POST /v1/jobs/{job_id}/cancel", "POST /v1/jobs/{job_id}/resume",
                           "POST /v1/jobs/{job_id}/rerun", "POST /v1/jobs/{job_id}/extend"}, reached
