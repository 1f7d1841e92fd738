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
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RayJobNotFound", "RayJobs", "RayUnavailable", "RAY_TO_JOB_STATUS", "SPEC_ENV"]

SPEC_ENV = "ADF_JOB_SPEC"
AGENT_WAIT_SECONDS = 60.0

# Ray's JobStatus → ours. PENDING is still "queued"; STOPPED is a cancel.
RAY_TO_JOB_STATUS = {
    "PENDING": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


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

    def submit(self, job_id: str, spec_json: str, *, attempt: int, resume: bool) -> str:
        """Start the job's driver; returns the Ray submission id (``<job>-<attempt>``)."""
        submission_id = f"{job_id}-{attempt}"
        entrypoint = (f"{self.command or _entrypoint()} run-job {job_id} --attempt {attempt}"
                      + (" --resume" if resume else ""))
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
            except RuntimeError as exc:
                # A head that just started answers 500 until its dashboard agent registers.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def status(self, submission_id: str) -> tuple[str, str | None]:
        """(our status, Ray's message when the job failed).

        Raises RayUnavailable when the Jobs API gives no answer: a refused or dropped
        connection (a head that is gone or restarting), a timeout, a 5xx; and RayJobNotFound
        when it answers that it has no such job.
        """
        try:
            info = self._client().get_job_info(submission_id)
        except OSError as exc:  # requests' ConnectionError, http.client.RemoteDisconnected, timeouts
            raise RayUnavailable(f"Ray Jobs API at {self.address}: no answer ({type(exc).__name__})") from None
        except RuntimeError as exc:  # "Request failed with status code N: ..."
            code = re.search(r"status code (\d{3})", str(exc))
            if code and code.group(1) == "404":
                raise RayJobNotFound(f"Ray has no job {submission_id}: {exc}") from None
            raise RayUnavailable(f"Ray Jobs API at {self.address}: {str(exc)[:300]}") from None
        status = RAY_TO_JOB_STATUS[str(info.status.value)]
        return status, info.message if status == "failed" else None

    def stop(self, submission_id: str) -> bool:
        return self._client().stop_job(submission_id)

    def logs(self, submission_id: str) -> str:
        return self._client().get_job_logs(submission_id)
