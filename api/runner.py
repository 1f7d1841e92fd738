"""Jobs run as Ray jobs, through the Ray Jobs API: the service never trains.

A job's driver is ``adf-service run-job JOB`` with the validated spec in its environment;
it shows on the Ray dashboard's Jobs page and keeps running when the service restarts.
The Jobs API client sends Ray's own auth token (``~/.ray/auth_token`` or
``RAY_AUTH_TOKEN``) when the cluster has token authentication on.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RayJobNotFound", "RayJobState", "RayJobs", "RayUnavailable", "RAY_TO_JOB_STATUS", "SPEC_ENV"]

SPEC_ENV = "ADF_JOB_SPEC"
AGENT_WAIT_SECONDS = 20.0  # then the queue tries again at its next round

# Ray's JobStatus → ours. PENDING is still "queued"; STOPPED is a cancel.
RAY_TO_JOB_STATUS = {
    "PENDING": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


# How Ray says a job's driver was lost rather than failed by itself: its supervisor actor died
# (the driver's node, or the head, went away), or the driver was killed by a signal.
_LOST_ERROR_TYPES = frozenset({"JOB_SUPERVISOR_ACTOR_DIED", "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE"})
_KILLED_EXIT_CODES = frozenset({137, 143})  # 128 + SIGKILL, 128 + SIGTERM (a shell's way of saying it)


@dataclass(frozen=True)
class RayJobState:
    """What the Jobs API says of one submission: our status, its message, and whether the driver was lost."""

    status: str
    message: str | None = None
    lost: bool = False  # failed because its driver died or was killed, not because it failed: resumable


class RayUnavailable(RuntimeError):
    """The Ray cluster's Jobs API does not answer."""


class RayJobNotFound(RuntimeError):
    """The Jobs API answers, and has no such job (e.g. the cluster was replaced)."""


def _entrypoint() -> str:
    # The driver runs on the cluster's head node: the console script next to this Python
    # when it exists (a local Ray), else the one on the head's PATH (an image).
    script = Path(sys.executable).with_name("adf-service")
    return str(script) if script.exists() else shutil.which("adf-service") or "adf-service"


@dataclass
class RayJobs:
    """The Jobs API of one Ray cluster, by its dashboard address (``http://host:8265``)."""

    address: str
    command: str | None = None  # the driver's console script on the head; default: _entrypoint()
    _cached: object | None = field(default=None, repr=False)

    def _client(self):
        # JobSubmissionClient checks the cluster's version over HTTP when made: make it once
        # (the reconciler asks about every active job every few seconds).
        if self._cached is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._cached = JobSubmissionClient(self.address)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"Ray Jobs API at {self.address}: {exc}") from None
        return self._cached

    def reachable(self) -> bool:
        """Whether the Jobs API answers now (a fresh round trip, for health checks)."""
        from ray.job_submission import JobSubmissionClient

        try:
            JobSubmissionClient(self.address)
        except Exception:
            return False
        return True

    def submit(self, job_id: str, spec_json: str, *, attempt: int, resume: bool, mode: str | None = None) -> str:
        """Start the job's driver; returns the Ray submission id (``<job>-<attempt>``). Raises
        RayUnavailable when the Jobs API gives no answer or no agent takes the job (worth trying again).

        ``mode``: ``"rerun"`` reruns the job's failed and unfinished trials from scratch (with
        ``resume``), ``"extend"`` runs the trials its spec adds to a finished job.
        """
        submission_id = f"{job_id}-{attempt}"
        flags = {"rerun": " --resume --rerun-failed", "extend": " --extend"}.get(mode or "", " --resume" if resume else "")
        entrypoint = f"{self.command or _entrypoint()} run-job {job_id} --attempt {attempt}{flags}"
        client = self._client()
        deadline = time.monotonic() + AGENT_WAIT_SECONDS
        while True:
            try:
                client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env={"env_vars": {SPEC_ENV: spec_json}},
                    metadata={"adf_job": job_id},
                )
                return submission_id
            except OSError as exc:  # no answer at all: a head that is gone or restarting
                raise RayUnavailable(f"Ray Jobs API at {self.address}: no answer ({type(exc).__name__})") from None
            except RuntimeError as exc:
                if f"submission_id {submission_id} already exists" in str(exc):
                    # This attempt's driver was started by an earlier call whose answer was lost (a
                    # dropped connection, a server stopped before it stored it): it is the job's
                    return submission_id
                # A head that just started answers 500 until its dashboard agent registers.
                if "No available agent" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise RayUnavailable(f"Ray Jobs API at {self.address}: no dashboard agent took the job in "
                                         f"{AGENT_WAIT_SECONDS:g} s (a head still starting)") from None
                time.sleep(1.0)

    def status(self, submission_id: str) -> tuple[str, str | None]:
        """(our status, Ray's message when the job failed); see :meth:`state`."""
        state = self.state(submission_id)
        return state.status, state.message

    def state(self, submission_id: str) -> RayJobState:
        """The submission's status, its message when it failed, and whether its driver was lost.

        Raises RayUnavailable when the Jobs API gives no answer: a refused or dropped
        connection (a head that is gone or restarting), a timeout, a 5xx; and RayJobNotFound
        when it answers that it has no such job.
        """
        with self._answering(submission_id):
            info = self._client().get_job_info(submission_id)
        status = RAY_TO_JOB_STATUS[str(info.status.value)]
        if status != "failed":
            return RayJobState(status)
        error_type = getattr(info.error_type, "value", info.error_type)
        code = info.driver_exit_code
        lost = error_type in _LOST_ERROR_TYPES or (code is not None and (code < 0 or code in _KILLED_EXIT_CODES))
        return RayJobState(status, info.message, lost)

    def stop(self, submission_id: str) -> bool:
        return self._client().stop_job(submission_id)

    def logs(self, submission_id: str) -> str:
        """The driver's log so far (stdout and stderr). Raises as :meth:`state` does."""
        with self._answering(submission_id):
            return self._client().get_job_logs(submission_id)

    async def tail(self, submission_id: str) -> AsyncIterator[str]:
        """The driver's log from its start, chunk by chunk as the driver writes it, until the job
        ends (Ray closes the stream then). Raises RayUnavailable when the stream breaks off.

        Make the client first (:meth:`state` or :meth:`logs`, in a thread): making it blocks.
        """
        from aiohttp import ClientError

        try:
            async for chunk in self._client().tail_job_logs(submission_id):
                yield chunk
        except (OSError, RuntimeError, ClientError) as exc:  # a lost head, a closed socket, a refused one
            raise RayUnavailable(f"Ray Jobs API at {self.address}: the log of {submission_id} broke off "
                                 f"({type(exc).__name__}: {str(exc)[:300]})") from None

    @contextmanager
    def _answering(self, submission_id: str) -> Iterator[None]:
        """The Jobs API's failures as ours: RayUnavailable for no answer (a refused or dropped connection,
        a head that is gone or restarting, a timeout, a 5xx), RayJobNotFound for "no such job"."""
        try:
            yield
        except (RayUnavailable, RayJobNotFound):
            raise
        except OSError as exc:  # requests' ConnectionError, http.client.RemoteDisconnected, timeouts
            raise RayUnavailable(f"Ray Jobs API at {self.address}: no answer ({type(exc).__name__})") from None
        except RuntimeError as exc:  # "Request failed with status code N: ..."
            code = re.search(r"status code (\d{3})", str(exc))
            if code and code.group(1) == "404":
                raise RayJobNotFound(f"Ray has no job {submission_id}: {exc}") from None
            raise RayUnavailable(f"Ray Jobs API at {self.address}: {str(exc)[:300]}") from None
