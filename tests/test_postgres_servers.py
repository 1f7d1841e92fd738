"""The job-store tests' PostgreSQL server (tests/helpers/postgres.py): the system's binaries
where they are, else the pgserver wheel, so `make test` needs no system PostgreSQL."""

import psycopg
import pytest

from tests.helpers import postgres
from tests.helpers.postgres import PostgresUnavailable, throwaway_server


@pytest.mark.postgres
def test_without_system_binaries_the_pgserver_wheel_runs_a_scratch_server(monkeypatch):
    monkeypatch.setattr(postgres, "find_pg_bindir", lambda: None)
    with throwaway_server() as server:
        assert server.source == "pgserver"
        name = server.create_database()
        with psycopg.connect(server.conninfo(name)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # the unix socket only
        server.drop_database(name)
        socket_dir = server.socket_dir
    assert not socket_dir.exists()  # stopped and deleted


def test_an_unknown_source_is_refused_naming_the_choices():
    with pytest.raises(PostgresUnavailable, match=r"ADF_TEST_PG='docker': expected one of system, pgserver or unset"):
        with throwaway_server("docker"):
            pass


def test_system_without_the_binaries_says_how_to_install_them(monkeypatch):
    monkeypatch.setattr(postgres, "find_pg_bindir", lambda: None)
    with pytest.raises(PostgresUnavailable, match=r"ADF_TEST_PG=system: .* apt-get install postgresql"):
        with throwaway_server("system"):
            pass
