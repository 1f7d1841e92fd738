"""No secret in logs, error bodies, job JSON or results (issue 16 item 5).

The secrets: bearer tokens, users' notification secrets, a job store URL's password, and the
credential a notify_url may hold (``user:password@`` and a ``?token=``). A real ``adf-service serve``
over PostgreSQL reached by a URL with a password takes tokens, good and bad requests, a job whose
end it fails to notify; then its log (stdout and stderr), the CLI's messages, every answer and the
job store's rows are searched for each secret. In this process, the notifications' delivery is
searched the same way in every log record down to DEBUG (httpx's and httpcore's included).

Nothing here gets as far as starting a job: the service's Ray address answers nothing, so a
submitted job waits queued until it is cancelled.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from sqlalchemy import text

from api.auth import create_user, issue_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import create_job, set_status
from api.notify import deliver_due, notify_secret
from api.settings import Settings
from api.testing import ADF, UNRUNNABLE_GRID, LiveService

NOWHERE = "http://127.0.0.1:1"  # a Ray dashboard address nothing answers at: no job starts


def hook_secrets() -> tuple[str, str]:
    """A notify_url's password and its query token, fresh (so that a match is no accident)."""
    return f"hookpw-{secrets.token_hex(8)}", f"hooktoken-{secrets.token_hex(8)}"


def leaked(secrets_by_name: dict[str, str], where: str, text_: str) -> list[str]:
    return [f"{name} in {where}" for name, secret in secrets_by_name.items() if secret in text_]


class Receiver(BaseHTTPRequestHandler):
    """A notification receiver that takes every POST (200)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # no access log of its own on stderr
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    """A receiver on 127.0.0.1; its port."""
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(timeout=10)


def test_delivering_notifications_logs_neither_the_urls_credential_nor_the_secret(tmp_path, receiver, caplog):
    """One notification taken (200), one refused (nobody listens), each logged at every level there is:
    the records name the job and the host, never the URL's password or token, nor the signing secret."""
    password, token = hook_secrets()
    settings = Settings(data_dir=tmp_path, ray_address=NOWHERE, notify_allow_private=True,
                        notify_max_attempts=1)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    caplog.set_level(logging.DEBUG)
    with make_sessionmaker(engine)() as s:
        alice = create_user(s, "alice")
        for port, end in ((receiver, "succeeded"), (1, "failed")):
            job, _ = create_job(s, owner=alice, name=f"to-{port}", spec_json=json.dumps(UNRUNNABLE_GRID),
                                request_hash=str(port), n_trials=2, storage_root=settings.storage_dir,
                                notify_url=f"http://hook:{password}@127.0.0.1:{port}/adf?token={token}")
            set_status(s, job, "running")
            set_status(s, job, end, error=None if end == "succeeded" else "it went wrong")
        assert deliver_due(s, settings) == 2
        statuses = sorted(s.scalars(text("SELECT notify_status FROM jobs")).all())
        signing = notify_secret(s, alice)
    engine.dispose()
    assert statuses == ["failed", "sent"]  # both went out: the log below is of real deliveries
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert "127.0.0.1" in logged
    secret_of = {"the URL's password": password, "the URL's token": token, "the signing secret": signing}
    assert not leaked(secret_of, "the log", logged), logged


def cli(service: LiveService, *args: str) -> subprocess.CompletedProcess:
    """``adf-service ARGS`` against the service's store, as its operator runs it; stdout and stderr kept."""
    return subprocess.run([ADF, *args], env=service.env, capture_output=True, text=True, check=True,
                          timeout=120)


@pytest.fixture
def password_url(postgres_server) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database reached by a URL with a password (the scratch server trusts every
    connection, so any password opens it): (url, password)."""
    name = postgres_server.create_database()
    password = f"dbpw-{secrets.token_hex(8)}"
    url = postgres_server.url(name).replace("postgres@", f"postgres:{password}@", 1)
    try:
        yield url, password
    finally:
        postgres_server.drop_database(name)


def wait_for_notification(client: httpx.Client, job_id: str, timeout: float = 30) -> dict:
    """The job once the service's loop has given up notifying its end (no receiver listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["notification"] == "failed":
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id}: its notification is still {job['notification']}")


def exchange(service: LiveService, tokens: dict[str, str],
             notify_url: str) -> list[tuple[str, httpx.Response]]:
    """What a user, a stranger and a careless client ask of the service, good and bad, and its answers:
    alice's notify secret (read, rotated), her job with ``notify_url`` (submitted, read every way, cancelled,
    its end's notification given up), refusals of every kind."""
    alice, bob = service.client(tokens["alice"]), service.client(tokens["bob"])
    answers = [("notify-secret", alice.get("/v1/me/notify-secret")),
               ("notify-secret", alice.post("/v1/me/notify-secret")),  # rotated: both are secrets
               ("submit", alice.post("/v1/jobs", json=UNRUNNABLE_GRID | {"notify_url": notify_url}))]
    job_id = answers[-1][1].json()["id"]
    yaml = {"content-type": "application/yaml"}
    for label, client, method, path, options in [
        ("unknown token", service.client(f"adf_{secrets.token_urlsafe(32)}"), "GET", "/v1/jobs", {}),
        ("token as Basic", service.client(None), "GET", "/v1/jobs",
         {"headers": {"Authorization": f"Basic {tokens['alice']}"}}),
        ("another's job", bob, "GET", f"/v1/jobs/{job_id}", {}),
        ("another's usage", bob, "GET", "/v1/usage", {"params": {"user": "alice"}}),
        ("quota as a user", bob, "PUT", "/v1/users/alice/quota", {"json": {"max_running_jobs": 1}}),
        ("invalid grid", alice, "POST", "/v1/jobs", {"json": UNRUNNABLE_GRID | {"repeats": "six"}}),
        ("malformed YAML", alice, "POST", "/v1/jobs", {"content": b"name: [", "headers": yaml}),
        ("no content type", alice, "POST", "/v1/jobs", {"content": b"name: probe"}),
        ("bad page", alice, "GET", "/v1/jobs", {"params": {"limit": -1}}),
        ("unknown job", alice, "GET", "/v1/jobs/j000000000000", {}),
        *[(f"job {part}", alice, "GET", f"/v1/jobs/{job_id}{part}", {}) for part in (
            "", "/trials", "/results", "/results?format=csv", "/epochs", "/report", "/best", "/best/export",
            "/logs")],
        ("jobs", alice, "GET", "/v1/jobs", {}),
        ("usage", alice, "GET", "/v1/usage", {}),
        ("compare", alice, "GET", "/v1/compare", {"params": {"jobs": job_id, "format": "html"}}),
        ("cancel", alice, "POST", f"/v1/jobs/{job_id}/cancel", {}),
    ]:
        answers.append((label, client.request(method, path, **options)))
    wait_for_notification(alice, job_id)
    return answers + [("ended job", alice.get(f"/v1/jobs/{job_id}"))]


@pytest.mark.service
def test_no_secret_reaches_the_servers_log_an_answer_or_the_job_store(tmp_path, password_url):
    url, db_password = password_url
    hook_password, hook_token = hook_secrets()
    service = LiveService(tmp_path, NOWHERE, env_extra={
        "ADF_DATABASE_URL": url, "ADF_NOTIFY_ALLOW_PRIVATE": "true", "ADF_NOTIFY_MAX_ATTEMPTS": "1"}).start()
    try:
        made = cli(service, "token", "create", "--user", "alice")  # the operator's way, its messages kept
        engine = make_engine(url)
        with make_sessionmaker(engine)() as s:  # the others' the quick way
            tokens = {"alice": made.stdout.strip(), "bob": issue_token(s, create_user(s, "bob")),
                      "root": issue_token(s, create_user(s, "root", admin=True))}
        answers = exchange(service, tokens, f"http://hook:{hook_password}@127.0.0.1:1/adf?token={hook_token}")
    finally:
        service.stop()
    log = (tmp_path / "server.log").read_text()
    notify_secrets = {f"notify secret {i}": a.json()["secret"] for i, (label, a) in enumerate(answers)
                      if label == "notify-secret"}
    secret_of = {f"{who}'s token": token for who, token in tokens.items()} | notify_secrets | {
        "the store's password": db_password, "the notify_url's password": hook_password,
        "the notify_url's token": hook_token}
    job_id = answers[2][1].json()["id"]
    assert answers[-1][1].json()["status"] == "cancelled"
    assert f"notifying the end of job {job_id} to 127.0.0.1" in log, log[-2000:]  # the log has its lines
    found = leaked(secret_of, "the server's log", log) + leaked(secret_of, "the CLI's messages", made.stderr)
    for label, answer in answers:
        assert answer.status_code < 500, (label, answer.text[:300])
        shown = {k: v for k, v in secret_of.items() if not (label == "notify-secret" and k in notify_secrets)}
        where = f"the answer to {label} ({answer.status_code})"
        found += leaked(shown, where, answer.text + str(answer.headers))
    assert {a.status_code for label, a in answers if label in ("unknown token", "token as Basic")} == {401}
    # The store: tokens as hashes, no password; the job keeps its notify_url (the service posts to it)
    kept = {k: v for k, v in secret_of.items() if not k.startswith("the notify_url")}
    with engine.connect() as connection:
        for table in ("users", "tokens", "jobs", "trials"):
            rows = " ".join(str(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
            found += leaked({k: v for k, v in kept.items() if not (table == "users" and k in notify_secrets)},
                            f"the store's {table} table", rows)
    engine.dispose()
    assert not found, found
