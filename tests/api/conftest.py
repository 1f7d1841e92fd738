"""Job-store fixtures: every store test runs on SQLite and on a real, private PostgreSQL server;
and a real local Ray head with its dashboard, and the service over it, for the end-to-end tests.

The PostgreSQL server is a throwaway one for the session (tests/helpers/postgres.py): from the
system's binaries where they are (.ci/postgres-setup.sh installs Debian's), else from the
``pgserver`` wheel of the ``test`` extra; ``ADF_TEST_PG=system`` or ``=pgserver`` chooses.
Its tests are marked ``postgres`` (tests/conftest.py): ``pytest -m "not postgres"`` leaves them
out, and so does ``ADF_TEST_SKIP_POSTGRES=1`` (they skip).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_user
from api.db import make_engine, make_sessionmaker, upgrade
from api.models import User
from tests.helpers.dashboard import dashboard_head
from tests.helpers.postgres import PG_ENV, PostgresServer, PostgresUnavailable, throwaway_server

SKIP_POSTGRES_ENV = "ADF_TEST_SKIP_POSTGRES"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for this test session, stopped and deleted afterwards."""
    if os.environ.get(SKIP_POSTGRES_ENV) == "1":
        pytest.skip(f"{SKIP_POSTGRES_ENV}=1: PostgreSQL tests skipped")
    try:
        with throwaway_server(os.environ.get(PG_ENV) or None) as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, once on SQLite (a file) and once on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'jobs.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


@pytest.fixture
def alice(session: Session) -> User:
    return create_user(session, "alice")


@pytest.fixture
def bob(session: Session) -> User:
    return create_user(session, "bob")


@pytest.fixture
def admin(session: Session) -> User:
    return create_user(session, "root", admin=True)


@pytest.fixture(scope="module")
def ray_dashboard() -> Iterator[str]:
    """A real local Ray head with its dashboard (the Jobs API runs the service's jobs), this
    process connected to it (tests/helpers/dashboard.py)."""
    with dashboard_head(num_cpus=2) as url:
        yield url


@pytest.fixture(scope="module")
def live(ray_dashboard, tmp_path_factory) -> Iterator:
    """``adf-service serve`` in its own process over a fresh data directory."""
    from api.testing import LiveService

    # The tests' stores live under pytest's temporary directory: the service's one data root.
    roots = json.dumps([str(tmp_path_factory.getbasetemp())])
    service = LiveService(tmp_path_factory.mktemp("service"), ray_dashboard, env_extra={"ADF_DATA_ROOTS": roots}).start()
    yield service
    service.stop()
