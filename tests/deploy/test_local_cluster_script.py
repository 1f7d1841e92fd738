"""deploy/local-cluster.sh where it starts no Ray: its arguments, its answers when no cluster
runs, and that it stops only processes it started (tests/deploy/test_local_cluster.py runs it)."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from tests.deploy.manifests import DEPLOY

SCRIPT = DEPLOY / "local-cluster.sh"


def run(*args: str, state, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args, "--dir", str(state)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RAY": "/bin/false"})


@pytest.mark.parametrize(("args", "says"), [
    (("start", "--workers", "two"), "'two' is not a whole number"),
    (("start", "--gpus-per-worker", "0.5"), "'0.5' is not a whole number"),
    (("start", "--wrokers", "2"), "unknown option '--wrokers'"),
    (("start", "--temp-root", "/tmp/" + "x" * 40), "too long for Ray's socket paths"),
    (("restart",), "deploy/local-cluster.sh start"),
])
def test_bad_arguments_are_refused_before_anything_starts(tmp_path, args, says):
    result = run(*args, state=tmp_path)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert not (tmp_path / "pids").exists()


def test_a_port_in_use_is_refused(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("start", "--dashboard-port", str(port), state=tmp_path)
    assert result.returncode == 1 and f"port {port} is in use" in result.stderr


def test_stop_and_status_without_a_cluster_say_so(tmp_path):
    stopped = run("stop", state=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout == f"no local cluster recorded in {tmp_path}\n"
    assert run("status", state=tmp_path).returncode == 1


def test_stop_leaves_alone_a_process_that_got_a_recorded_pid_later(tmp_path):
    # a process in a session of its own, as a node would be, whose start time is not the one recorded
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "pids").write_text(f"{other.pid} head 1\n")
        stopped = run("stop", state=tmp_path)
        assert stopped.returncode == 0
        assert f"head (pid {other.pid}): its 'ray start' has exited" in stopped.stderr
        time.sleep(0.5)
        assert other.poll() is None  # still running: not ours
        assert not (tmp_path / "pids").exists()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_the_script_never_finds_or_stops_processes_by_name():
    code = "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(pkill|killall|pgrep|pidof)\b|ray stop", code)
    assert re.findall(r"\bkill -(\w+)", code) == ["TERM", "KILL"]
