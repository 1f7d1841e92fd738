"""Losing the Ray head (issue 11 item 5): while the Jobs API gives no answer, a job keeps its status.

A real head (``ray start --head``, as ``adf-service serve`` starts it) runs a job's driver; the
head is then stopped, and reconciling the job finds nothing to answer: a refused connection,
and a connection dropped without an answer (a server that closes what it accepts), are
"no answer", never "the job failed". A Jobs API that answers without the job has lost it: the
job goes back to the queue to resume by itself, and fails once its automatic resumes are spent.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.auth import create_user
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import create_job, set_status
from api.localray import start_local_ray, stop_local_ray
from api.models import utcnow
from api.ports import free_port
from api.runner import RayJobs, RayUnavailable
from api.service import reconcile
from api.settings import Settings

pytestmark = pytest.mark.ray


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def head(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    # Ray's files (and its record of this head) in a temp directory of their own; a short
    # path: Ray's sockets live there, and a socket's path has at most 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="adf-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    # A head started while ~/.ray/auth_token exists (an earlier test may have made it) turns token
    # auth on, and this process's Ray, imported by then, would not send the token.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    data_dir = tmp_path / "head"
    try:
        yield start_local_ray(data_dir, free_port()), data_dir
    finally:  # also when the head never answered: it may still run
        stop_local_ray(data_dir)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """An HTTP address that accepts connections and closes them without a word (RemoteDisconnected)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.recv(65536)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def running_job(session: Session, ray: RayJobs, tmp_path: Path):
    owner = create_user(session, "alice")
    job, _ = create_job(session, owner=owner, name="long", spec_json="{}", request_hash="h", n_trials=1,
                        storage_root=str(tmp_path / "runs"))
    job.ray_job_id = ray.submit(job.id, "{}", attempt=1, resume=False)
    job.admitted_at = utcnow()
    session.commit()
    set_status(session, job, "running")
    return job


def test_a_job_keeps_its_status_while_its_ray_head_is_gone(head, session, tmp_path, dropping_server):
    url, data_dir = head
    ray = RayJobs(url, command="sleep 60; true")  # a driver that outlives the test's checks
    job = running_job(session, ray, tmp_path)
    assert reconcile(session, ray, job).status == "running"

    stop_local_ray(data_dir)  # the head is lost: connections are refused
    with pytest.raises(RayUnavailable, match="no answer"):
        ray.status(job.ray_job_id)
    assert reconcile(session, ray, job).status == "running" and job.error is None

    # The same client, now at a head that accepts and drops every connection (what a head that
    # is going down does): JobSubmissionClient keeps its address in _address.
    ray._client()._address = dropping_server
    with pytest.raises(RayUnavailable, match="no answer"):
        ray.status(job.ray_job_id)
    assert reconcile(session, ray, job).status == "running" and job.error is None


def test_a_jobs_api_that_answers_without_the_job_resumes_it_and_fails_it_once_resumes_are_spent(
        head, session, tmp_path):
    url, _ = head
    ray = RayJobs(url, command="sleep 60; true")
    job = running_job(session, ray, tmp_path)
    job.ray_job_id = f"{job.id}-9"  # no such submission on this cluster
    session.commit()
    assert reconcile(session, ray, job, Settings(auto_resume_attempts=1)).status == "queued"
    assert f"Ray has no job {job.id}-9" in job.queue_reason and job.admitted_at is None
    job.admitted_at = utcnow()  # as the queue would start it again, on a cluster that loses it again
    session.commit()
    assert reconcile(session, ray, job, Settings(auto_resume_attempts=1)).status == "failed"
    assert f"Ray has no job {job.id}-9" in job.error and "after 1 automatic resume:" in job.error
