"""`adf-service run` never waits on a dead Ray head: without --address it starts a Ray of its own
(Ray's default joins the cluster recorded last on the machine, dead or alive, and retries its
GCS for minutes); with --address, a cluster that does not answer is an error within seconds
that names the address.

Ray's record of the last cluster is ``$RAY_TMPDIR/ray/ray_current_cluster``: the tests write a
stale one under a temporary RAY_TMPDIR, never the machine's own."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.ports import free_port
from trials.cli import RayAddressError, ray_init_address

ADF = str(Path(sys.executable).with_name("adf-service"))
runner = CliRunner()


@pytest.fixture
def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture
def stale_record(monkeypatch, dead_address) -> Path:
    """A RAY_TMPDIR whose ray_current_cluster names a head that is gone (short: Ray's sockets live there)."""
    tmp = Path(tempfile.mkdtemp(prefix="adf-ray-", dir="/tmp"))
    (tmp / "ray").mkdir()
    (tmp / "ray" / "ray_current_cluster").write_text(dead_address)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def grid(tmp_path, store) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: x\ndataset: {{store: {store.path}}}\nresources: {{gpus_per_trial: 0}}\n"
                    f"storage: {tmp_path / 'runs'}\n")
    return path


def test_without_an_address_run_starts_a_ray_of_its_own_despite_a_recorded_cluster(stale_record):
    assert ray_init_address(None) == "local"
    assert ray_init_address("local") == "local"


def test_an_address_where_nothing_listens_is_an_error_naming_it(dead_address):
    start = time.monotonic()
    with pytest.raises(RayAddressError, match=re.escape(f"--address {dead_address}")) as raised:
        ray_init_address(dead_address)
    assert "no Ray cluster answers there" in str(raised.value)
    assert time.monotonic() - start < 10


def test_auto_names_the_recorded_cluster_that_no_longer_answers(stale_record, dead_address):
    port = dead_address.rpartition(":")[2]
    with pytest.raises(RayAddressError, match=rf"--address auto \(\S+:{port}\): no Ray cluster answers"):
        ray_init_address("auto")


def test_an_address_without_a_port_is_refused():
    with pytest.raises(RayAddressError, match="'nowhere'"):
        ray_init_address("nowhere")


def test_an_address_that_answers_is_passed_to_ray_unchanged():
    with socket.create_server(("", 0)) as server:  # Ray dials 127.0.0.1 at this machine's address
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert ray_init_address(address) == address
        assert ray_init_address(f"ray://{address}") == f"ray://{address}"


def test_run_with_an_unreachable_address_fails_within_seconds_naming_it(grid, dead_address):
    start = time.monotonic()
    result = runner.invoke(app, ["run", str(grid), "--address", dead_address], env={"RAY_ADDRESS": None})
    assert result.exit_code == 2, result.output
    assert dead_address in result.output and "no Ray cluster answers" in result.output
    assert time.monotonic() - start < 10


def test_ray_address_in_the_environment_is_checked_like_the_option(grid, dead_address):
    result = runner.invoke(app, ["run", str(grid)], env={"RAY_ADDRESS": dead_address})
    assert result.exit_code == 2 and dead_address in result.output, result.output


@pytest.mark.ray
def test_run_after_its_head_died_starts_a_local_ray_instead_of_waiting_for_it(grid, stale_record):
    """End to end: the stale record is where `ray.init()` would go; `run` must not. Resuming a job that
    does not exist ends the run right after Ray started."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([ADF, "run", str(grid), "--resume", "no-such-job", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Starting a local Ray for this run" in done.stderr
    assert "no job to resume" in done.stderr
    assert "Connecting to existing Ray cluster" not in done.stderr
