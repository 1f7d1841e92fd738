"""Notifications of a job's end (api/notify.py), received by a real HTTP server on 127.0.0.1.

The store's part (marking, delivery, retries, the secret) runs on SQLite and PostgreSQL; the
refusal at submit and the secret's route in the app in this process; and one job end to end:
submitted over HTTP to ``adf-service serve``, its Ray job failed on a real local Ray (the
service's driver command is ``false``), its POST retried after the receiver's 500 and verified
as a receiver would (docs/rest.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.app import create_app
from api.auth import get_or_create_user, issue_token
from api.jobstore import replace_trials, set_status
from api.models import Job, User
from api.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    backoff_seconds,
    deliver_due,
    notify_secret,
    refused_notify_url,
    rotate_notify_secret,
)
from api.ports import free_port
from api.settings import Settings
from api.testing import unrunnable_store
from tests.api.live import ADF, UNRUNNABLE_GRID, LiveService, tiny_grid
from tests.api.test_probe_defects import call, is_problem
from tests.helpers.jobs import result_row, submit


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: records every POST and answers the statuses in ``answers`` in turn, then 200."""

    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def wait_for(self, n: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < deadline, f"{len(self.received)} of {n} POSTs came in {timeout} s"
            time.sleep(0.1)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(Received(dict(self.headers.items()), body))
            self.send_response(state.answers.pop(0) if state.answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/adf"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verifies(secret: str, post: Received) -> bool:
    """What docs/rest.md tells a receiver to do: HMAC-SHA256 of "<timestamp>.<body>", compared in constant time."""
    timestamp = post.headers[TIMESTAMP_HEADER]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", post.headers[SIGNATURE_HEADER])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, notify_allow_private=True, notify_backoff_seconds=10, notify_max_attempts=3)


def ended(s: Session, owner: User, notify_url: str | None, status: str = "succeeded") -> Job:
    job, _ = submit(s, owner)
    job.notify_url = notify_url
    s.commit()
    set_status(s, job, "running")
    return set_status(s, job, status, error=None if status == "succeeded" else "it went wrong")


# --- the store: marking, delivery, retries ---------------------------------------------------


def test_an_ended_job_posts_its_outcome_best_result_and_usage_signed_with_its_owners_secret(
        session, alice, bob, receiver, settings):
    job, _ = submit(session, alice)
    job.notify_url, job.gpu_seconds, job.cpu_seconds, job.lost_gpu_seconds = receiver.url, 7200.0, 1800.0, 360.0
    genotype = {"format": "adf-genotype/1", "operators": "S2", "cells": [[[[0, "skip"]]]], "provenance": {"seed": 1}}
    replace_trials(session, job, [
        result_row(1, "evaluation", test_top1=80.0, learned=True, genotype=json.dumps(genotype)),
        result_row(2, "evaluation", test_top1=90.0, learned=True, genotype=json.dumps(genotype)),
        result_row(3, "evaluation", test_top1=99.0, learned=False),  # an unlearned search is no result
        result_row(4, "search", test_top1=100.0),
    ])
    set_status(session, job, "running")
    assert job.notify_status is None  # only an end notifies
    set_status(session, job, "succeeded")
    assert (job.notify_status, job.notify_attempts, job.notify_next_at) == ("pending", 0, job.ended_at)
    assert alice.notify_secret is None

    assert deliver_due(session, settings) == 1
    [post] = receiver.received
    body = post.json
    assert {k: body[k] for k in ("event", "job_id", "name", "owner", "status", "error")} == {
        "event": "job.ended", "job_id": job.id, "name": "grid", "owner": "alice", "status": "succeeded", "error": None}
    assert body["ended_at"] == job.ended_at.isoformat()
    assert body["best"]["trial_id"] == "t00002" and body["best"]["test_top1"] == 90.0
    assert body["best"]["genotype"] == {k: v for k, v in genotype.items() if k != "provenance"}
    assert body["usage"] == {"gpu_hours": 2.0, "cpu_hours": 0.5, "lost_gpu_hours": 0.1, "lost_cpu_hours": 0.0}
    assert post.headers["Content-Type"] == "application/json"
    assert abs(int(post.headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert alice.notify_secret is not None and verifies(notify_secret(session, alice), post)
    assert not verifies(notify_secret(session, bob), post)
    tampered = Received(post.headers, post.body.replace(b'"succeeded"', b'"failed"'))
    assert not verifies(alice.notify_secret, tampered)
    assert (job.notify_status, job.notify_attempts) == ("sent", 1)
    assert deliver_due(session, settings) == 0 and len(receiver.received) == 1  # sent once


def test_a_receiver_that_fails_twice_gets_the_same_post_again_after_a_doubling_backoff(
        session, alice, receiver, settings):
    receiver.answers = [500, 503]
    job = ended(session, alice, receiver.url, "failed")
    t0 = job.notify_next_at
    assert deliver_due(session, settings, t0) == 1
    assert (job.notify_status, job.notify_attempts, job.notify_next_at) == ("pending", 1, t0 + timedelta(seconds=10))
    assert deliver_due(session, settings, t0 + timedelta(seconds=9)) == 0  # not due yet
    t1 = t0 + timedelta(seconds=10)
    assert deliver_due(session, settings, t1) == 1
    assert (job.notify_attempts, job.notify_next_at) == (2, t1 + timedelta(seconds=20))
    assert deliver_due(session, settings, t1 + timedelta(seconds=19)) == 0
    assert deliver_due(session, settings, t1 + timedelta(seconds=20)) == 1
    assert (job.notify_status, job.notify_attempts, job.notify_next_at) == ("sent", 3, None)
    posts = receiver.received
    assert len(posts) == 3 and len({p.body for p in posts}) == 1  # the same notification each time
    assert all(verifies(notify_secret(session, alice), p) for p in posts)
    assert posts[0].json["status"] == "failed" and posts[0].json["error"] == "it went wrong"
    assert posts[0].json["best"] is None


def test_backoff_doubles_up_to_an_hour():
    assert [backoff_seconds(n, 5) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff_seconds(30, 5) == 3600


def test_a_notification_no_receiver_takes_is_failed_after_the_last_attempt(session, alice, receiver, settings):
    receiver.answers = [500] * 10
    job = ended(session, alice, receiver.url, "cancelled")
    for _ in range(settings.notify_max_attempts):
        assert deliver_due(session, settings, job.notify_next_at) == 1  # each retry when it is due
    assert (job.notify_status, job.notify_attempts, job.notify_next_at) == ("failed", 3, None)
    assert deliver_due(session, settings, job.ended_at + timedelta(days=1)) == 0
    assert len(receiver.received) == 3 and receiver.received[0].json["status"] == "cancelled"


def test_a_receiver_that_does_not_answer_is_a_failed_attempt(session, alice, settings):
    job = ended(session, alice, f"http://127.0.0.1:{free_port()}/nobody")
    assert deliver_due(session, settings) == 1
    assert (job.notify_status, job.notify_attempts) == ("pending", 1)


def test_a_job_without_notify_url_notifies_nothing(session, alice, receiver, settings):
    job = ended(session, alice, None, "failed")
    assert (job.notify_status, job.notify_next_at) == (None, None)
    assert deliver_due(session, settings) == 0 and receiver.received == []


def test_a_job_resumed_before_its_notification_went_out_notifies_its_next_end(session, alice, receiver, settings):
    receiver.answers = [500]
    job = ended(session, alice, receiver.url, "failed")
    deliver_due(session, settings, job.notify_next_at)
    set_status(session, job, "queued")  # resumed while a retry waits
    assert deliver_due(session, settings, job.notify_next_at + timedelta(days=1)) == 0
    set_status(session, job, "running")
    set_status(session, job, "succeeded")
    assert (job.notify_status, job.notify_attempts) == ("pending", 0)
    assert deliver_due(session, settings) == 1 and job.notify_status == "sent"
    assert [p.json["status"] for p in receiver.received] == ["failed", "succeeded"]


def test_a_url_that_turned_private_is_not_posted_to_unless_allowed(session, alice, receiver, settings):
    job = ended(session, alice, receiver.url)
    strict = settings.model_copy(update={"notify_allow_private": False})
    assert deliver_due(session, strict) == 1
    assert receiver.received == [] and (job.notify_status, job.notify_attempts) == ("pending", 1)


def test_the_secret_is_made_once_and_rotation_replaces_it(session, alice, bob):
    first = notify_secret(session, alice)
    assert len(first) == 64 and int(first, 16) >= 0 and notify_secret(session, alice) == first
    assert notify_secret(session, bob) != first
    rotated = rotate_notify_secret(session, alice)
    assert rotated != first and notify_secret(session, alice) == rotated


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.0.7/",
    "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1]/", "https://224.0.0.1/",
])
def test_a_loopback_private_or_link_local_host_is_refused_unless_allowed(url):
    refused = refused_notify_url(url, allow_private=False)
    assert refused is not None and "loopback, private or link-local" in refused
    assert refused_notify_url(url, allow_private=True) is None


def test_a_public_address_is_taken_and_what_is_not_http_is_refused_always():
    assert refused_notify_url("https://93.184.215.14:8443/hooks", allow_private=False) is None
    for url in ("ftp://93.184.215.14/", "http:///path", "file:///etc/passwd"):
        assert refused_notify_url(url, allow_private=True) == "an http:// or https:// URL with a host is needed"
    assert "port" in refused_notify_url("http://93.184.215.14:99999/", allow_private=True)


# --- the app: refusal at submit, the secret's route ------------------------------------------


@pytest.fixture
def tokens(sessions) -> dict[str, str]:
    with sessions() as s:
        return {name: issue_token(s, get_or_create_user(s, name)) for name in ("alice", "bob")}


def app_settings(db_url: str, data_dir: Path) -> Settings:
    unrunnable_store(data_dir)
    return Settings(data_dir=data_dir, database_url=db_url, ray_address="http://127.0.0.1:1")


@pytest.mark.parametrize(("url", "says"), [
    ("http://169.254.169.254/latest/meta-data/", "loopback, private or link-local"),
    ("http://127.0.0.1:5000/hook", "loopback, private or link-local"),
    ("ftp://example.org/hook", "https?://"),
])
def test_a_notify_url_the_service_will_not_post_to_is_refused_at_submit(db_url, tokens, tmp_path, url, says):
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    submitted, listed = call(app_settings(db_url, tmp_path), ("POST", "/v1/jobs", {
        "json": UNRUNNABLE_GRID | {"notify_url": url}, "headers": headers}), ("GET", "/v1/jobs", {"headers": headers}))
    problem = is_problem(submitted, 422)
    assert [e["path"] for e in problem["errors"]] == ["notify_url"] and says in problem["detail"]
    assert listed.json()["total"] == 0  # nothing was stored


def test_each_user_reads_and_rotates_only_their_own_secret(db_url, tokens, tmp_path):
    def get(who: str) -> tuple[str, str, dict]:
        return "GET", "/v1/me/notify-secret", {"headers": {"Authorization": f"Bearer {tokens[who]}"}}

    first, again, bobs, anonymous = call(app_settings(db_url, tmp_path), get("alice"), get("alice"), get("bob"),
                                         ("GET", "/v1/me/notify-secret", {}))
    assert first.status_code == again.status_code == bobs.status_code == 200
    assert first.json()["user"] == "alice" and first.json()["secret"] == again.json()["secret"]
    assert bobs.json()["user"] == "bob" and bobs.json()["secret"] != first.json()["secret"]
    assert first.headers["cache-control"] == "no-store"
    assert is_problem(anonymous, 401)["detail"].startswith("no bearer token")
    [rotated] = call(app_settings(db_url, tmp_path), ("POST", *get("alice")[1:]))
    [after] = call(app_settings(db_url, tmp_path), get("alice"))  # call() sends its requests at once
    assert rotated.json()["secret"] not in (first.json()["secret"], bobs.json()["secret"])
    assert after.json()["secret"] == rotated.json()["secret"]


def test_receivers_that_never_answer_do_not_hold_up_the_queue(db_url, sessions, tmp_path):
    """Three ended jobs notify a receiver that takes the connection and never answers (each POST waits
    TIMEOUT_SECONDS, 5 s). The queue's rounds must go on meanwhile: a job queued while those POSTs hang
    gets its round's word (no Ray answers here) within 3 s, where one loop for both waited 15 s."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)  # the kernel accepts; nobody reads or answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    settings = app_settings(db_url, tmp_path).model_copy(update={"notify_allow_private": True})
    with sessions() as s:
        owner = get_or_create_user(s, "alice")
        for _ in range(3):
            ended(s, owner, url)
    app = create_app(settings, reconcile_every=0.2)

    def reason_of(job_id: str) -> str | None:
        with sessions() as s:
            return s.get(Job, job_id).queue_reason

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(1.0)  # the first notification round is waiting on the receiver
            with sessions() as s:
                job_id = submit(s, get_or_create_user(s, "bob"))[0].id
            began = time.monotonic()
            while await asyncio.to_thread(reason_of, job_id) is None:
                assert time.monotonic() - began < 3.0, "no round of the queue ran while notifications hung"
                await asyncio.sleep(0.1)
            assert reason_of(job_id) == "waiting: the Ray cluster does not answer"
            silent.close()  # the hung POST ends now, and the next ones are refused: each an attempt
            while not await asyncio.to_thread(attempted_all):
                assert time.monotonic() - began < 20.0, "the notifications were not attempted"
                await asyncio.sleep(0.1)

    def attempted_all() -> bool:
        with sessions() as s:
            return all(job.notify_attempts for job in s.query(Job).filter(Job.notify_url == url))

    try:
        asyncio.run(run())
    finally:
        silent.close()


# --- end to end: a job on Ray, its notification retried and verified -------------------------


@pytest.fixture(scope="module")
def live(ray_dashboard, tmp_path_factory):
    """The service over a real local Ray, its jobs' drivers failing at once, posting to receivers on
    127.0.0.1 and retrying after 0.5 s."""
    env = {"ADF_DATA_ROOTS": json.dumps([str(tmp_path_factory.getbasetemp())]), "ADF_NOTIFY_ALLOW_PRIVATE": "true",
           "ADF_NOTIFY_BACKOFF_SECONDS": "0.5", "ADF_DRIVER_COMMAND": "false"}
    service = LiveService(tmp_path_factory.mktemp("service"), ray_dashboard, env_extra=env).start()
    yield service
    service.stop()


def test_a_job_that_fails_on_ray_notifies_its_url_retried_signed_and_the_secret_shows_nowhere_else(
        live, receiver, store):
    token = live.token("carol")
    carol = live.client(token)
    receiver.answers = [500]
    grid = tiny_grid(store, name="notified") + f"notify_url: {receiver.url}\n"
    answer = carol.post("/v1/jobs", content=grid, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    first, retried = receiver.wait_for(2, timeout=120)
    assert first.body == retried.body
    body = retried.json
    assert body["job_id"] == job_id and body["status"] == "failed" and body["best"] is None
    assert "exit code 1" in body["error"]  # Ray's word on the driver
    assert body["usage"].keys() == {"gpu_hours", "cpu_hours", "lost_gpu_hours", "lost_cpu_hours"}

    secret = carol.get("/v1/me/notify-secret").json()["secret"]
    assert verifies(secret, first) and verifies(secret, retried)
    shown = subprocess.run([ADF, "notify-secret", "--server", live.url, "--token", token],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.strip() == secret

    deadline = time.time() + 10  # the service marks it sent right after the receiver's 2xx
    while (job := carol.get(f"/v1/jobs/{job_id}")).json()["notification"] != "sent":
        assert time.time() < deadline, job.json()
        time.sleep(0.2)
    assert job.json()["status"] == "failed"
    elsewhere = {
        "the job": job.text, "the job list": carol.get("/v1/jobs").text,
        "its results": carol.get(f"/v1/jobs/{job_id}/results").text,
        "its driver log": carol.get(f"/v1/jobs/{job_id}/logs").text,
        "an error": carol.get(f"/v1/jobs/{job_id}/best").text,
        "a refused grid": carol.post("/v1/jobs", json=UNRUNNABLE_GRID | {"notify_url": "gopher://x"}).text,
        "the server's log": (live.data_dir / "server.log").read_text(),
        "the body": first.body.decode(), "the headers": json.dumps(first.headers),
    }
    assert [where for where, text in elsewhere.items() if secret in text] == []
