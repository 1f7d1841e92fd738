"""The commands of the service's machine: `adf-service serve`, `stop-ray`, `token create | list | revoke`.

Plain functions: ``api/cli.py`` assembles them into ``adf-service``. The job store is the
one ``Settings()`` names (``ADF_DATA_DIR`` / ``ADF_DATABASE_URL``), migrated before use;
SQLAlchemy, FastAPI, uvicorn and Ray are imported inside the commands, when they run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from adf_service.console import console, err_console, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["serve", "stop_ray", "token_create", "token_list", "token_revoke"]


@contextmanager
def _store() -> Iterator[Session]:
    from sqlalchemy.exc import SQLAlchemyError

    from api.db import make_engine, make_sessionmaker, upgrade
    from api.jobstore import JobStoreError
    from api.settings import Settings, SettingsError

    try:
        settings = Settings()
        engine = make_engine(settings.db_url)
    except (SettingsError, ValueError, SQLAlchemyError) as exc:
        fail(exc)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            yield session
    except (JobStoreError, SQLAlchemyError) as exc:
        fail(exc)
    finally:
        engine.dispose()


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def token_create(
    user: Annotated[str, typer.Option(help="User name; created if it does not exist.")],
    admin: Annotated[bool, typer.Option(help="Make the user an admin (sees every job).")] = False,
) -> None:
    """Issue a bearer token for USER and print it once."""
    from api.auth import get_or_create_user, issue_token

    with _store() as s:
        token = issue_token(s, get_or_create_user(s, user, admin=admin))
    print(token)
    err_console.print(
        f"token for {user!r}: it will not be shown again; keep it somewhere safe.", highlight=False
    )


def token_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Every token: user, shown prefix, created, last used, revoked."""
    from api.auth import list_tokens

    with _store() as s:
        tokens = [t for t in list_tokens(s) if user is None or t.user.name == user]
        rows = [
            {
                "user": t.user.name,
                "admin": t.user.is_admin,
                "prefix": t.prefix,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in tokens
        ]
    if as_json:
        times = ("created_at", "last_used_at", "revoked_at")
        print(json.dumps([{k: _iso(v) if k in times else v for k, v in row.items()} for row in rows]))
        return
    table = Table(title="API tokens (times in UTC)")
    for column in ("user", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        name = row["user"] + (" (admin)" if row["admin"] else "")
        table.add_row(
            name, row["prefix"], *(_when(row[k]) for k in ("created_at", "last_used_at", "revoked_at"))
        )
    console.print(table)


def token_revoke(
    prefix: Annotated[str, typer.Argument(help="The prefix `token list` shows, or the whole token.")],
) -> None:
    """Revoke a token by its prefix; requests with it are refused from now on."""
    from api.auth import revoke_token

    with _store() as s:
        n = revoke_token(s, prefix)
    if n == 0:
        fail(ValueError(f"no live token with prefix {prefix!r} (see `adf-service token list`)"))
    console.print(f"revoked {n} token{'s' if n > 1 else ''} with prefix {prefix!r}", highlight=False)


def serve(
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: ADF_HOST or 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: ADF_PORT or 8000).")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray dashboard URL whose Jobs API runs the jobs (default: ADF_RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Run the REST service (FastAPI under uvicorn); jobs run as Ray jobs."""
    from api.localray import LocalRayError, start_local_ray
    from api.settings import Settings, SettingsError

    try:
        settings = Settings()
        updates = {k: v for k, v in {"host": host, "port": port, "ray_address": ray_address}.items() if v is not None}
        settings = settings.model_copy(update=updates)
        settings.check_bind(settings.host)
    except (SettingsError, ValueError) as exc:
        fail(exc)
    if not settings.ray_address:
        err_console.print(f"Starting a local Ray head, or using the one on port {settings.local_ray_port} "
                          "(it keeps running after the server stops: `adf-service stop-ray` ends it)")
        try:
            address = start_local_ray(settings.data_dir, settings.local_ray_port)
        except LocalRayError as exc:
            fail(exc)
        settings = settings.model_copy(update={"ray_address": address, "cpu_fallback": True})
    import uvicorn
    from sqlalchemy import make_url

    from api.app import create_app  # imports Ray: after start_local_ray has chosen Ray's auth mode
    from api.http import ProblemHttpProtocol

    store = make_url(settings.db_url).render_as_string(hide_password=True)  # its password stays out of logs
    err_console.print(f"Ray dashboard: {settings.ray_address}   job store: {store}   auth: {settings.auth}")
    err_console.print(f"REST API on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                http=ProblemHttpProtocol)


def stop_ray() -> None:
    """Stop the local Ray head that `serve` started (by the pid it recorded in ADF_DATA_DIR)."""
    from api.localray import LocalRayError, stop_local_ray
    from api.settings import Settings, SettingsError

    try:
        pid = stop_local_ray(Settings().data_dir)
    except (LocalRayError, SettingsError, ValueError) as exc:
        fail(exc)
    console.print("no local Ray head of this data directory runs" if pid is None
                  else f"stopped the local Ray head (pid {pid})", highlight=False)


def user_quota(
    name: Annotated[str, typer.Argument(help="The user.")],
    running_jobs: Annotated[Optional[int], typer.Option(min=1, help="Jobs that run at once.")] = None,
    gpus: Annotated[Optional[float], typer.Option(min=0, help="GPUs held at once.")] = None,
    gpu_hours: Annotated[Optional[float], typer.Option(min=0, help="GPU-hours per 30 days.")] = None,
    default: Annotated[bool, typer.Option("--default", help="Clear the user's own quotas: the service's apply.")] = False,
) -> None:
    """Show or set a user's quotas in the job store (the service's defaults are its ADF_MAX_* settings)."""
    from api.admission import user_quota as quota_of
    from api.auth import QUOTA_FIELDS, UserNotFound, set_quota
    from api.settings import Settings

    changes = dict.fromkeys(QUOTA_FIELDS) if default else {}
    changes.update({k: v for k, v in zip(QUOTA_FIELDS, (running_jobs, gpus, gpu_hours)) if v is not None})
    with _store() as s:
        try:
            user = set_quota(s, name, changes)
        except (UserNotFound, ValueError) as exc:
            fail(exc)
        quota = quota_of(user, Settings())
        own = ", ".join(f"{k}={getattr(user, k)}" for k in QUOTA_FIELDS if getattr(user, k) is not None)
    limit = "no limit"
    console.print(f"{name}: {quota.running_jobs} jobs at once, {limit if quota.gpus is None else f'{quota.gpus:g}'} "
                  f"GPUs at once, {limit if quota.gpu_hours is None else f'{quota.gpu_hours:g}'} GPU-hours per 30 days"
                  f" ({'set for the user: ' + own if own else 'the service defaults'})", highlight=False)
