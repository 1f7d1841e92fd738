"""Service settings: one pydantic-settings class, read from ``ADF_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adf_service.yamldoc import MAX_CHARS

__all__ = ["LOOPBACK_HOSTS", "Settings", "SettingsError"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SettingsError(ValueError):
    """Settings that cannot work together (e.g. local auth on a public address)."""


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything the service reads from its environment; ``ADF_DATA_DIR=/srv/adf`` sets ``data_dir``."""

    model_config = SettingsConfigDict(env_prefix="ADF_", extra="ignore")

    data_dir: Path = Field(
        Path("~/.adf-service"), description="Directory for the SQLite job store and, by default, job runs."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the job store; default: SQLite at {data_dir}/jobs.db."
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address (Jobs API, e.g. http://head:8265); default: a local Ray."
    )
    storage: str | None = Field(
        None, description="Where jobs write checkpoints and result tables; default: {data_dir}/runs."
    )
    auth: Literal["tokens", "local"] = Field(
        "tokens", description="'tokens': bearer tokens; 'local': one admin user, no tokens, loopback only."
    )
    local_ray_port: int = Field(
        8265, ge=1, le=65535, description="Dashboard port of the local Ray head `serve` starts (or reuses) "
        "when ray_address is not set."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    allowed_hosts: list[str] | None = Field(
        None, description="Host header names the server answers (JSON list, e.g. '[\"adf.example.org\"]'; a "
        "port is ignored; '*': any). Default: with auth 'local' the loopback names (localhost, 127.0.0.1, ::1), "
        "against DNS rebinding; with tokens, any."
    )
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server binds to.")
    max_grid_trials: int = Field(
        2000, ge=1, description="Largest number of trials one submitted grid may expand to."
    )
    data_roots: list[Path] = Field(
        default_factory=list, description="Directories a grid's dataset.store may name (JSON list, e.g. "
        '\'["/data/stores"]\'); a store is resolved, symlinks followed, and must lie under one; default: data_dir.'
    )
    cpu_fallback: bool = Field(
        False, description="Jobs run their trials on CPUs when no live Ray node has a GPU (the grid's "
        "resources.allow_cpu_fallback, set for every job); `serve` sets it on the local Ray it starts. Leave it "
        "off on an autoscaling cluster: there a GPU grid waits for the GPU nodes its trials ask for."
    )
    parse_seconds: float = Field(
        10.0, gt=0, le=600, description="Longest a submitted grid may take to read and check before it is refused."
    )
    max_upload_bytes: int = Field(
        MAX_CHARS, ge=1, description="Largest accepted request body (grid.yaml or JSON); no grid is read past "
        f"{MAX_CHARS:,} characters whatever this says."
    )
    max_running_jobs_per_user: int = Field(
        4, ge=1, description="Quota: jobs of one user that run at once; more wait queued (an admin may set "
        "another for a user: `adf-service user quota`)."
    )
    max_queued_jobs_per_user: int = Field(
        50, ge=1, description="Queued plus running jobs a user may have at once; a submission beyond is refused (429)."
    )
    max_gpus_per_user: float | None = Field(
        None, gt=0, description="Quota: GPUs one user's running jobs hold at once (a job's trials at once are capped "
        "to fit); default: no limit."
    )
    max_gpu_hours_per_user: float | None = Field(
        None, ge=0, description="Quota: GPU-hours one user may use in 30 days; over it, GPU jobs wait. Default: no limit."
    )
    admit_on_free_resources: bool = Field(
        True, description="The queue admits a job when some node has free resources for one of its trials. Turn it off "
        "on an autoscaling cluster, where pending trials are what brings nodes up: then only quotas and order hold jobs."
    )
    auto_resume_attempts: int = Field(
        3, ge=0, le=100, description="Times the service resumes a job by itself when Ray loses its driver (a head "
        "restarted, a node died) before it calls the job failed."
    )
    auto_resume_backoff_seconds: float = Field(
        10.0, ge=0, le=3600, description="Wait before the first automatic resume; doubled for each next one."
    )
    stale_trial_seconds: float = Field(
        1800.0, gt=0, description="A running trial without a result for this long is stale: its job's notice "
        "names it (GET /v1/jobs/{id}, `adf-service status`)."
    )
    public_url: str | None = Field(
        None, description="External base URL of the service (https://adf.example.org): Location headers become "
        "absolute URLs under it; default: relative paths."
    )
    dashboard_url: str | None = Field(
        None, description="The Ray dashboard's URL as users reach it, for the jobs' dashboard links; "
        "default: ray_address."
    )
    driver_command: str | None = Field(
        None, description="How the Ray head runs adf-service for a job's driver (e.g. /opt/venv/bin/adf-service); "
        "default: the adf-service beside the service's Python if it exists, else adf-service on the head's PATH."
    )
    notify_max_attempts: int = Field(
        8, ge=1, le=100, description="POSTs of a job's end to its grid's notify_url before the notification is "
        "given up (`failed`); a 2xx answer ends them."
    )
    notify_backoff_seconds: float = Field(
        5.0, gt=0, le=3600, description="Wait after a notification's first failed POST; doubled after each next "
        "one, at most an hour."
    )
    notify_allow_private: bool = Field(
        False, description="Let a grid's notify_url name a loopback, private or link-local address (a receiver "
        "inside the service's own network, tests); off, such a URL is refused at submit (SSRF)."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand_user(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("storage")
    @classmethod
    def _local_or_uri(cls, storage: str | None) -> str | None:
        # A URI (s3://, gs://, file://) goes to pyarrow as it is; a path is made absolute.
        if storage is None or "://" in storage:
            return storage
        return str(Path(storage).expanduser().resolve())

    @field_validator("data_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[Path]) -> list[Path]:
        return [root.expanduser().resolve() for root in roots]

    @property
    def store_roots(self) -> list[Path]:
        """Where feature stores may be: ``data_roots``, else ``data_dir`` (resolved, symlinks followed)."""
        return self.data_roots or [self.data_dir.resolve()]

    @property
    def db_url(self) -> str:
        """The job store's SQLAlchemy URL: ``database_url``, else SQLite under ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @property
    def storage_dir(self) -> str:
        """Root of the jobs' storage (a path or a pyarrow URI): ``storage``, else ``{data_dir}/runs``."""
        return self.storage if self.storage is not None else str(self.data_dir.resolve() / "runs")

    def answered_hosts(self) -> list[str] | None:
        """The Host names requests may carry (api/hosts.py); None: any."""
        if self.allowed_hosts is not None:
            return None if "*" in self.allowed_hosts else self.allowed_hosts
        return list(LOOPBACK_HOSTS) if self.auth == "local" else None

    def check_bind(self, host: str) -> None:
        """Refuse to serve ``auth="local"`` (no tokens, everyone is admin) beyond this machine."""
        if self.auth == "local" and not _is_loopback(host):
            raise SettingsError(
                f"auth 'local' serves everyone as the admin without tokens, so it may only bind a loopback "
                f"address ({', '.join(LOOPBACK_HOSTS)}), not {host!r}; "
                f"set ADF_AUTH=tokens to serve on {host!r}"
            )
