"""Engines, sessions and migrations of the job store (SQLite by default, PostgreSQL by URL).

Migrations ship inside the package (``api/migrations``) and run programmatically, so a
server needs no ``alembic.ini``: :func:`upgrade` on every start is cheap and idempotent.
On PostgreSQL an advisory lock lets several server processes start at once; within one
process, do not run upgrades from two threads (alembic's ``context`` is process-global).
For a new revision during development::

    from alembic import command
    command.revision(alembic_config(url), message="...", autogenerate=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30  # a writer waits this long for another's lock before "database is locked"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer (the API reads while the driver updates progress).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores REFERENCES/ON DELETE without it
    finally:
        cursor.close()


# FastAPI runs sync routes on a threadpool of 40: a smaller connection pool lets requests
# that hold a connection wait on threads held by requests waiting for a connection.
POOL_SIZE = 40


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite: threads share it, WAL, foreign keys on, parent dir created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_size", POOL_SIZE)
        return create_engine(url, pool_pre_ping=True, **kwargs)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if database and database != ":memory:":
        kwargs.setdefault("pool_size", POOL_SIZE)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API serialises them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url_or_engine: str | Engine | None = None) -> Config:
    """An alembic Config for the packaged migrations; the engine travels in ``attributes``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url_or_engine is not None:
        config.attributes["engine"] = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the store to ``revision``; a store already there is left untouched."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        command.upgrade(alembic_config(engine), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The store's migration revision, None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations under {MIGRATIONS_DIR}"
    return head
