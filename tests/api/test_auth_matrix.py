"""Who may call what (issue 16 item 5): every route of the app, enumerated from ``app.routes`` so that
a new one cannot be left out, called with no token, a malformed header, an unknown token, a revoked
token, another user's token, the owner's token and an admin's; and the addresses the service and
its local Ray dashboard bind to by default.

The matrix runs in this process (token auth, a SQLite store holding alice's job, a Ray address
nothing answers at: a submitted grid stays queued and nothing gets as far as starting a job).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from api.app import create_app
from api.auth import create_user, issue_token, revoke_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import create_job, set_status
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID, LiveService, unrunnable_store

NOWHERE = "http://127.0.0.1:1"  # a Ray dashboard address nothing answers at
ALICE_TRIAL = "t_search"

# What each route is, by who may call it. Every route with {job_id} is a job route (alice's job:
# another user gets the 404 an unknown job gets); every other route must be listed here.
PUBLIC = {("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
          ("GET", "/redoc")}
OWN = {("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/me/notify-secret"),
       ("POST", "/v1/me/notify-secret")}
JOBS_BY_QUERY = {("GET", "/v1/compare")}  # names alice's job in its query
USER_NAMED = {("GET", "/v1/users/{name}/quota"), ("GET", "/v1/usage")}  # alice's: hers and admins'
ADMIN_ONLY = {("PUT", "/v1/users/{name}/quota")}

QUERIES = {("POST", "/v1/jobs/{job_id}/extend"): {"repeats": 1}, ("GET", "/v1/compare"): {"jobs": "{job_id}"},
           ("GET", "/v1/usage"): {"user": "alice"}}
BODIES = {("POST", "/v1/jobs"): UNRUNNABLE_GRID, ("PUT", "/v1/users/{name}/quota"): {"max_running_jobs": 3}}
IDENTITIES = ("none", "malformed", "unknown", "revoked", "other", "owner", "admin")


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app, included routers' too; HEAD left out (GET's handler)."""
    app = create_app(Settings(ray_address=NOWHERE))
    return sorted({(method, context.path) for context in iter_route_contexts(app.routes)
                   for method in (getattr(context, "methods", None) or ()) if method != "HEAD"})


ROUTES = app_routes()


def route_class(route: tuple[str, str]) -> str:
    if route in PUBLIC:
        return "public"
    if "{job_id}" in route[1] or route in JOBS_BY_QUERY:
        return "job"
    for kind, routes in (("own", OWN), ("user", USER_NAMED), ("admin", ADMIN_ONLY)):
        if route in routes:
            return kind
    return "unclassified"


def expected(kind: str, identity: str) -> str:
    """What ``identity`` gets from a route of class ``kind``: public, 401, 403, 404 or allowed."""
    if kind == "public":
        return "public"
    if identity in ("none", "malformed", "unknown", "revoked"):
        return "401"
    if identity == "other":
        return {"job": "404", "user": "403", "admin": "403"}.get(kind, "allowed")
    if identity == "owner" and kind == "admin":
        return "403"
    return "allowed"


@dataclass(frozen=True)
class Seen:
    """One answer of the matrix."""

    status: int
    content_type: str
    www_authenticate: str | None
    body: bytes

    @property
    def problem(self) -> dict | None:
        return json.loads(self.body) if self.content_type == "application/problem+json" else None


@dataclass(frozen=True)
class Matrix:
    answers: dict[tuple[tuple[str, str], str], Seen]  # (route, identity) -> its answer
    job_id: str  # alice's


def _headers(tokens: dict[str, str], revoked: str) -> dict[str, str]:
    """The Authorization header of each identity (none: no header)."""
    headers = {name: f"Bearer {token}" for name, token in tokens.items()}
    return headers | {"revoked": f"Bearer {revoked}", "unknown": f"Bearer adf_{secrets.token_urlsafe(32)}",
                      "malformed": f"Basic {tokens['owner']}"}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    """Every route called by every identity, in turn, over a store with alice (a user with a live and a
    revoked token and a succeeded job), bob (a user) and root (an admin)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("matrix"), ray_address=NOWHERE, auth="tokens")
    unrunnable_store(settings.data_dir)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        alice, bob, root = create_user(s, "alice"), create_user(s, "bob"), create_user(s, "root", admin=True)
        tokens = {"owner": issue_token(s, alice), "other": issue_token(s, bob), "admin": issue_token(s, root)}
        revoked = issue_token(s, alice)
        revoke_token(s, revoked)
        job, _ = create_job(s, owner=alice, name="alices", spec_json=json.dumps(UNRUNNABLE_GRID),
                            request_hash="a", n_trials=2, storage_root=settings.storage_dir)
        set_status(s, job, "running")
        set_status(s, job, "succeeded")
        job_id = job.id
    engine.dispose()
    headers = _headers(tokens, revoked)
    app = create_app(settings, reconcile_every=3600)

    async def run() -> dict:
        answers = {}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
                for route in ROUTES:
                    for identity in IDENTITIES:
                        answer = await client.request(**request_of(route, job_id, headers.get(identity)))
                        answers[route, identity] = Seen(
                            answer.status_code, answer.headers.get("content-type", ""),
                            answer.headers.get("www-authenticate"), answer.content)
        return answers

    return Matrix(asyncio.run(run()), job_id)


def request_of(route: tuple[str, str], job_id: str, authorization: str | None) -> dict:
    """httpx.request's arguments for ``route`` on alice's job, her name and trial, as ``authorization``."""
    method, path = route
    url = path.format(job_id=job_id, trial_id=ALICE_TRIAL, name="alice")
    params = {k: v.format(job_id=job_id) if isinstance(v, str) else v
              for k, v in QUERIES.get(route, {}).items()}
    headers = {} if authorization is None else {"Authorization": authorization}
    return {"method": method, "url": url, "params": params, "json": BODIES.get(route), "headers": headers}


def test_every_route_of_the_app_is_in_the_matrix():
    unclassified = [route for route in ROUTES if route_class(route) == "unclassified"]
    assert not unclassified, f"routes the auth matrix does not know: {unclassified}: give each a class"
    assert len(ROUTES) >= 25


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_route_answers_each_caller_as_its_class_says(matrix, route, identity):
    kind = route_class(route)
    answer = matrix.answers[route, identity]
    want = expected(kind, identity)
    problem = answer.problem
    said = f"{route} as {identity}: {answer.status} {answer.body[:300]!r}"
    assert answer.status < 500, said
    if want == "public":
        assert answer.status == 200, said
    elif want == "401":
        assert answer.status == 401 and problem is not None and answer.www_authenticate == "Bearer", said
    elif want == "403":
        assert answer.status == 403 and problem is not None, said
    elif want == "404":  # another user's job is not told apart from a job that does not exist
        assert answer.status == 404 and problem is not None and problem["detail"].startswith("no job"), said
    else:
        assert answer.status not in (401, 403), said
        assert not (answer.status == 404 and problem and problem["detail"].startswith("no job")), said
        if kind in ("own", "user", "admin"):
            assert 200 <= answer.status < 300, said


def test_a_user_lists_only_their_own_jobs_and_an_admin_everyones(matrix):
    seen = {who: {job["id"] for job in json.loads(matrix.answers[("GET", "/v1/jobs"), who].body)["items"]}
            for who in ("owner", "other", "admin")}
    assert matrix.job_id in seen["owner"] and matrix.job_id in seen["admin"]
    assert matrix.job_id not in seen["other"]


def test_a_notify_secret_is_its_users_alone(matrix):
    secret = {who: json.loads(matrix.answers[("GET", "/v1/me/notify-secret"), who].body)
              for who in ("owner", "other")}
    assert secret["owner"]["user"] == "alice" and secret["other"]["user"] == "bob"
    assert secret["owner"]["secret"] != secret["other"]["secret"]


def listening_addresses(port: int) -> set[str]:
    """The local addresses (IPv4 and IPv6) of the sockets listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port and len(address) == width:
                words = [address[i:i + 8] for i in range(0, width, 8)]
                found.add(".".join(str(b) for b in bytes.fromhex(words[0])[::-1]) if width == 8 else address)
    return found


@pytest.mark.service
def test_serve_binds_127_0_0_1_unless_told_otherwise(tmp_path, monkeypatch):
    """A real `adf-service serve` (settings' default host, tests/api/test_settings.py): it listens on
    127.0.0.1 alone, as the kernel's table of listening sockets says."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp here to read the listening address from")
    monkeypatch.delenv("ADF_HOST", raising=False)
    service = LiveService(tmp_path, NOWHERE).start()
    try:
        assert listening_addresses(service.port) == {"127.0.0.1"}
    finally:
        service.stop()


def test_the_local_ray_head_serves_its_dashboard_on_127_0_0_1(tmp_path, monkeypatch):
    """`serve` without a Ray address starts `ray start --head`; its command binds the dashboard to
    loopback. The command is caught, not run (no Ray here)."""
    from api import localray

    started = []

    class NotStarted:
        returncode, pid = 1, 0

        def __init__(self, command, **kwargs):
            started.append(command)

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(subprocess, "Popen", NotStarted)
    # start_local_ray sets RAY_AUTH_MODE in this process when ~/.ray/auth_token exists: kept to this test,
    # or every later Ray head of the session would expect a token
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    with pytest.raises(localray.LocalRayError):
        localray.start_local_ray(tmp_path, 1, wait=1)
    [command] = started
    assert "--dashboard-host=127.0.0.1" in command and not any("0.0.0.0" in word for word in command)


def test_local_job_starts_its_ray_dashboard_on_127_0_0_1(tmp_path, monkeypatch):
    """`adf-service local-job` starts a private Ray; its dashboard binds loopback (ray.init is caught)."""
    import ray

    from api.local import run_local_job

    asked = {}

    def init(**kwargs):
        asked.update(kwargs)
        raise RuntimeError("caught: no Ray here")

    monkeypatch.setattr(ray, "init", init)
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: probe\n")
    with pytest.raises(RuntimeError, match="caught"):
        run_local_job(grid, tmp_path)
    assert asked["dashboard_host"] == "127.0.0.1" and asked["include_dashboard"]
