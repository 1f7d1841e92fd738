"""Job-store fixtures: every store test runs on SQLite and on a real, private PostgreSQL server.

The PostgreSQL cluster is a throwaway one: initdb into a fresh directory under /tmp, a unix
socket in that directory and no TCP listener, stopped by its data directory at the end of
the session. Missing server binaries fail the PostgreSQL tests (run .ci/postgres-setup.sh)
unless ADF_TEST_SKIP_POSTGRES=1.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_user
from api.db import make_engine, make_sessionmaker, upgrade
from api.models import User

SKIP_POSTGRES_ENV = "ADF_TEST_SKIP_POSTGRES"
BACKENDS = ("sqlite", "postgresql")
_database_names = itertools.count()


def find_pg_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    bindirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    bindirs = [d for d in bindirs if (d / "pg_ctl").exists()]

    def major(bindir: Path) -> int:
        version = bindir.parent.name
        return int(version) if version.isdigit() else 0

    return max(bindirs, key=major, default=None)


@dataclass(frozen=True)
class PostgresServer:
    bindir: Path
    base: Path  # data directory, socket and log live here

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.base} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.base}"

    def create_database(self) -> str:
        name = f"adf_test_{os.getpid()}_{next(_database_names)}"
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its binaries as the `postgres` OS user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "running as root, but there is no 'postgres' OS user to run PostgreSQL as "
            "(.ci/postgres-setup.sh installs the package, which creates it)",
            pytrace=False,
        )
    return ["runuser", "-u", "postgres", "--"]


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        log = cwd / "server.log"
        server_log = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server_log}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for this test session, stopped and deleted afterwards."""
    if os.environ.get(SKIP_POSTGRES_ENV) == "1":
        pytest.skip(f"{SKIP_POSTGRES_ENV}=1: PostgreSQL tests skipped")
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under "
            "/usr/lib/postgresql/*/bin: run .ci/postgres-setup.sh (Debian: apt-get install postgresql), "
            f"or set {SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL half of the job-store tests",
            pytrace=False,
        )
    as_postgres = _as_postgres_user()
    # Directly under /tmp: the postgres user must reach it (pytest's tmp dirs are 0700 root), and a
    # unix socket path has to stay under ~100 bytes.
    base = Path(tempfile.mkdtemp(prefix="adf-pg-"))
    server = PostgresServer(bindir, base)
    started = False
    try:
        if as_postgres:
            shutil.chown(base, "postgres")
        initdb = f"-D {server.datadir} -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions"
        _run([*as_postgres, str(bindir / "initdb"), *initdb.split()], cwd=base)
        # No TCP listener, the socket in our own directory, no durability: a scratch server.
        options = (
            f"-k {base} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = f"-D {server.datadir} -l {base / 'server.log'} -w -t 60 start".split()
        _run([*as_postgres, str(bindir / "pg_ctl"), *start, "-o", options], cwd=base)
        started = True
        yield server
    finally:
        if started:
            subprocess.run(
                [*as_postgres, str(bindir / "pg_ctl"), "-D", str(server.datadir), "-m", "fast", "-w", "stop"],
                cwd=base,
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(base, ignore_errors=True)


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
    process connected to it. The dashboard agent gets a free port: under a plain
    ``ray.init`` it takes 52365, and where another Ray holds that port the agent runs
    without its HTTP server and every submission fails ("No available agent")."""
    import ray
    from ray.cluster_utils import Cluster

    from tests.api.live import free_port

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
        "dashboard_agent_listen_port": free_port(),
    })
    ray.init(address=cluster.address, log_to_driver=False)
    yield f"http://127.0.0.1:{port}"
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def live(ray_dashboard, tmp_path_factory) -> Iterator:
    """``adf-service serve`` in its own process over a fresh data directory."""
    from tests.api.live import LiveService

    service = LiveService(tmp_path_factory.mktemp("service"), ray_dashboard).start()
    yield service
    service.stop()
