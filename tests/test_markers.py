"""The markers that say what a test needs (tests/helpers/markers.py, tests/conftest.py)."""

import subprocess
from types import SimpleNamespace

import pytest

from tests.helpers.markers import Watch, needs, started


def fake_program(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_fixtures_that_start_ray_the_service_or_postgresql_give_their_markers():
    def item(*fixtures, **params):
        return SimpleNamespace(fixturenames=list(fixtures), callspec=SimpleNamespace(params=params))

    assert needs(item("tmp_path", "local_ray")) == {"ray"}
    assert needs(item("cluster", "store")) == {"ray"}
    assert needs(item("live", "ray_dashboard", "store")) == {"ray", "service"}
    assert needs(item("session", "engine", "db_url", db_url="postgresql")) == {"postgres"}
    assert needs(item("session", "engine", "db_url", db_url="sqlite")) == set()
    assert needs(item("postgres_server")) == {"postgres"}
    assert needs(SimpleNamespace(fixturenames=["tmp_path"])) == set()


@pytest.mark.parametrize(("argv", "expected"), [
    (["/venv/lib/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=x"], ("raylet", "ray")),
    (["/venv/lib/ray/core/src/ray/gcs/gcs_server"], ("gcs_server", "ray")),
    (["/venv/bin/ray", "start", "--head", "--block"], ("ray start", "ray")),
    (["/venv/bin/adf-service", "serve", "--port", "8000"], ("adf-service serve", "service")),
    (["adf-service", "run", "grid.yaml"], ("adf-service run", "ray")),
    (["/venv/bin/adf-service", "token", "create", "--user", "a"], None),
    (["/venv/bin/ray", "stop"], None),
    (["/usr/lib/postgresql/15/bin/initdb", "-D", "x"], None),
    ("echo raylet", None),
])
def test_starting_ray_or_the_service_is_recognised_from_the_command_line(argv, expected):
    assert started(None, argv) == expected


def test_a_test_without_the_marker_that_starts_a_ray_node_is_caught(tmp_path):
    assert Watch.allowed == set()  # this test has no marker
    subprocess.run([fake_program(tmp_path, "raylet")], check=True)
    subprocess.run([fake_program(tmp_path, "adf-service"), "serve"], check=True)
    subprocess.run([fake_program(tmp_path, "adf-service"), "validate", "grid.yaml"], check=True)
    assert Watch.unmarked == ["raylet (needs the `ray` marker)", "adf-service serve (needs the `service` marker)"]
    Watch.unmarked.clear()  # caught: this test passes instead of failing at teardown


@pytest.mark.ray
def test_a_test_with_the_marker_may_start_it(tmp_path):
    assert Watch.allowed == {"ray"}
    subprocess.run([fake_program(tmp_path, "raylet")], check=True)
    assert Watch.unmarked == []
