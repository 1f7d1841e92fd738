"""`adf-service token …`: manage API users' bearer tokens, added to the grid CLI.

The console script points here; the store is the one ``Settings()`` names
(``ADF_DATA_DIR`` / ``ADF_DATABASE_URL``), migrated before use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adf_service.cli import _fail
from adf_service.console import console, err_console
from api.auth import get_or_create_user, issue_token, list_tokens, revoke_token
from api.db import make_engine, make_sessionmaker, upgrade
from api.jobstore import JobStoreError
from api.localray import LocalRayError, start_local_ray, stop_local_ray
from api.settings import Settings, SettingsError
from trials.cli import app

__all__ = ["app", "token_app"]

token_app = typer.Typer(help="API bearer tokens: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@contextmanager
def _store() -> Iterator[Session]:
    try:
        settings = Settings()
        engine = make_engine(settings.db_url)
    except (SettingsError, ValueError, SQLAlchemyError) as exc:
        _fail(exc)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            yield session
    except (JobStoreError, SQLAlchemyError) as exc:
        _fail(exc)
    finally:
        engine.dispose()


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


@token_app.command("create")
def create(
    user: Annotated[str, typer.Option(help="User name; created if it does not exist.")],
    admin: Annotated[bool, typer.Option(help="Make the user an admin (sees every job).")] = False,
) -> None:
    """Issue a bearer token for USER and print it once."""
    with _store() as s:
        token = issue_token(s, get_or_create_user(s, user, admin=admin))
    print(token)
    err_console.print(
        f"token for {user!r}: it will not be shown again; keep it somewhere safe.", highlight=False
    )


@token_app.command("list")
def list_(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Every token: user, shown prefix, created, last used, revoked."""
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


@token_app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(help="The prefix `token list` shows, or the whole token.")],
) -> None:
    """Revoke a token by its prefix; requests with it are refused from now on."""
    with _store() as s:
        n = revoke_token(s, prefix)
    if n == 0:
        _fail(ValueError(f"no live token with prefix {prefix!r} (see `adf-service token list`)"))
    console.print(f"revoked {n} token{'s' if n > 1 else ''} with prefix {prefix!r}", highlight=False)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: ADF_HOST or 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: ADF_PORT or 8000).")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray dashboard URL whose Jobs API runs the jobs (default: ADF_RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Run the REST service (FastAPI under uvicorn); jobs run as Ray jobs."""
    try:
        settings = Settings()
        updates = {k: v for k, v in {"host": host, "port": port, "ray_address": ray_address}.items() if v is not None}
        settings = settings.model_copy(update=updates)
        settings.check_bind(settings.host)
    except (SettingsError, ValueError) as exc:
        _fail(exc)
    if not settings.ray_address:
        err_console.print(f"Starting a local Ray head, or using the one on port {settings.local_ray_port} "
                          "(it keeps running after the server stops: `adf-service stop-ray` ends it)")
        try:
            address = start_local_ray(settings.data_dir, settings.local_ray_port)
        except LocalRayError as exc:
            _fail(exc)
        settings = settings.model_copy(update={"ray_address": address})
    import uvicorn

    from api.app import create_app  # imports Ray: after start_local_ray has chosen Ray's auth mode

    err_console.print(f"Ray dashboard: {settings.ray_address}   job store: {settings.db_url}   auth: {settings.auth}")
    err_console.print(f"REST API on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@app.command("stop-ray")
def stop_ray() -> None:
    """Stop the local Ray head that `serve` started (by the pid it recorded in ADF_DATA_DIR)."""
    try:
        pid = stop_local_ray(Settings().data_dir)
    except (LocalRayError, SettingsError, ValueError) as exc:
        _fail(exc)
    console.print("no local Ray head of this data directory runs" if pid is None
                  else f"stopped the local Ray head (pid {pid})", highlight=False)


import api.client_cli  # noqa: E402,F401  (registers the REST client commands on this app)
import api.local  # noqa: E402,F401  (registers local-job on this app)
