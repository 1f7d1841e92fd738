"""A throwaway PostgreSQL server for the job-store tests: from the system's binaries, else the ``pgserver`` wheel.

System binaries (``initdb`` and ``pg_ctl`` on PATH or under /usr/lib/postgresql/*/bin, e.g.
Debian's ``postgresql``, which .ci/postgres-setup.sh installs): a private cluster is made
with them, initdb into a fresh directory under /tmp, a unix socket in that directory and no
TCP listener, stopped by its data directory at the end. Elsewhere the ``pgserver`` wheel (in
the ``test`` extra: PostgreSQL 16 inside a Python package) starts one the same way, socket
only; as root it runs the server as an OS user ``pgserver`` that it creates.

Both are scratch servers: no durability (fsync, synchronous commit and full-page writes
off), trust authentication, superuser ``postgres``. ``ADF_TEST_PG=system`` or
``ADF_TEST_PG=pgserver`` chooses; unset, the system's binaries win when they can run here.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = ["PG_ENV", "SOURCES", "PostgresServer", "PostgresUnavailable", "find_pg_bindir", "kill_and_restart",
           "throwaway_server"]

PG_ENV = "ADF_TEST_PG"
SOURCES = ("system", "pgserver")
SCRATCH = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_database_names = itertools.count()


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here: the message says what to install or set."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server reached by its unix socket in ``socket_dir``, superuser ``postgres``."""

    socket_dir: Path
    source: str  # where its binaries came from, for messages: "system /usr/lib/postgresql/15/bin", "pgserver"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.socket_dir} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket_dir}"

    def create_database(self) -> str:
        name = f"adf_test_{os.getpid()}_{next(_database_names)}"
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def _has_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


@contextmanager
def throwaway_server(source: str | None = None) -> Iterator[PostgresServer]:
    """A scratch server for the ``with`` block, stopped and deleted after it.

    ``source``: "system", "pgserver", or None for the system's binaries where they can run
    (as root they need the ``postgres`` OS user their package creates) and pgserver elsewhere.
    """
    if source not in (None, *SOURCES):
        raise PostgresUnavailable(f"{PG_ENV}={source!r}: expected one of {', '.join(SOURCES)} or unset")
    bindir = find_pg_bindir() if source != "pgserver" else None
    usable = bindir is not None and (os.geteuid() != 0 or _has_postgres_user())
    if source == "system" or (source is None and usable):
        if bindir is None:
            raise PostgresUnavailable(
                f"{PG_ENV}=system: PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under "
                "/usr/lib/postgresql/*/bin: run .ci/postgres-setup.sh (Debian: apt-get install postgresql)")
        with _system_server(bindir) as server:
            yield server
    else:
        with _pgserver_server() as server:
            yield server


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its binaries as the `postgres` OS user."""
    if os.geteuid() != 0:
        return []
    if not _has_postgres_user():
        raise PostgresUnavailable(
            "running as root, but there is no 'postgres' OS user to run the system's PostgreSQL as "
            f"(.ci/postgres-setup.sh installs the package, which creates it; or set {PG_ENV}=pgserver)")
    return ["runuser", "-u", "postgres", "--"]


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        log = cwd / "server.log"
        server_log = log.read_text()[-3000:] if log.exists() else ""
        raise PostgresUnavailable(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server_log}")


@contextmanager
def _system_server(bindir: Path) -> Iterator[PostgresServer]:
    as_postgres = _as_postgres_user()
    # Directly under /tmp: the postgres user must reach it (pytest's tmp dirs are 0700 root), and a
    # unix socket path has to stay under ~100 bytes.
    base = Path(tempfile.mkdtemp(prefix="adf-pg-"))
    datadir = base / "data"
    started = False
    try:
        if as_postgres:
            shutil.chown(base, "postgres")
        initdb = f"-D {datadir} -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions"
        _run([*as_postgres, str(bindir / "initdb"), *initdb.split()], cwd=base)
        # No TCP listener, the socket in our own directory, no durability: a scratch server.
        options = f"-k {base} -c listen_addresses='' " + " ".join(f"-c {k}={v}" for k, v in SCRATCH.items())
        start = f"-D {datadir} -l {base / 'server.log'} -w -t 60 start".split()
        _run([*as_postgres, str(bindir / "pg_ctl"), *start, "-o", options], cwd=base)
        started = True
        yield PostgresServer(base, f"system {bindir}")
    finally:
        if started:
            subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"],
                           cwd=base, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def _pgserver_server() -> Iterator[PostgresServer]:
    try:
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise PostgresUnavailable(
            "no PostgreSQL server here: neither the system's binaries (initdb, pg_ctl; Debian: apt-get install "
            "postgresql, see .ci/postgres-setup.sh) nor the pgserver wheel (pip install -c constraints.txt "
            "-e '.[test]')") from None
    pgdata = Path(tempfile.mkdtemp(prefix="adf-pgs-"))  # short: the socket lives in it
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
    except (subprocess.SubprocessError, OSError) as exc:
        log = pgdata / "log"
        server_log = log.read_text()[-3000:] if log.exists() else ""
        shutil.rmtree(pgdata, ignore_errors=True)
        raise PostgresUnavailable(f"pgserver could not start PostgreSQL in {pgdata}: {exc}\n{server_log}") from exc
    try:
        info = server.get_postmaster_info()
        running = PostgresServer(Path(info.socket_dir), "pgserver")
        with psycopg.connect(running.conninfo("postgres"), autocommit=True) as conn:
            for name, value in SCRATCH.items():
                conn.execute(f"ALTER SYSTEM SET {name} = {value}")
            conn.execute("SELECT pg_reload_conf()")
        yield running
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def kill_and_restart(server: PostgresServer, *, down_seconds: float = 2.0) -> int:
    """Kill a system server's postmaster by its pid (SIGKILL, from ``postmaster.pid``), leave it down
    ``down_seconds``, and start it again over the same data with the options it ran with
    (``postmaster.opts``); the killed pid. Its clients see their connections dropped meanwhile."""
    if not server.source.startswith("system "):
        raise PostgresUnavailable(f"kill_and_restart needs a server from the system's binaries, not {server.source}")
    bindir = Path(server.source.removeprefix("system "))
    datadir = server.socket_dir / "data"
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    command = shlex.split((datadir / "postmaster.opts").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(down_seconds)
    options = shlex.join(command[3:])  # past "postgres -D <datadir>"
    start = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(server.socket_dir / "server.log"), "-w", "-t", "60",
             "start", "-o", options]
    _run([*_as_postgres_user(), *start], cwd=server.socket_dir)
    return pid
