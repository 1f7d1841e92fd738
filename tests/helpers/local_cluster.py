"""deploy/local-cluster.sh driven by tests: a Ray head and worker nodes, each its own `ray start`
process tree in a session of its own, stopped by the pids the script recorded (never by name).
Used by tests/deploy/test_local_cluster.py and tests/cluster/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BIN", "SCRIPT", "free_port", "local_cluster_run", "recorded", "session_members"]

SCRIPT = Path(__file__).parents[2] / "deploy" / "local-cluster.sh"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: a node `start` launched, whose `ray start`
    runs in a session of its own, with every process of that node."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(stat.parent.name))
    return members


def recorded(state: Path) -> dict[str, int]:
    """role -> pid, as `start` recorded them."""
    try:
        lines = (state / "pids").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {role: int(pid) for pid, role, *_ in (line.split() for line in lines if line.strip())}


@contextmanager
def local_cluster_run(tmp_path: Path, *, keep_logs: Path | None = None) -> Iterator:
    """Runs local-cluster.sh with a state dir and a short temp root of its own; afterwards stops
    whatever it recorded and still runs, even when the test failed. ``keep_logs``: a directory that
    gets every node's Ray session logs (drivers', agents', raylets') before the temp root goes."""
    state = tmp_path / "state"
    temp_root = Path(tempfile.mkdtemp(prefix="adf-lc-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY": str(BIN / "ray"),
           # a token in ~/.ray would otherwise make this head require it
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        command = ["bash", str(SCRIPT), *args, "--dir", str(state)]
        if args[0] == "start":
            command += ["--temp-root", str(temp_root)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)

    run.state, run.env = state, env
    try:
        yield run
    finally:
        pids = recorded(state) or getattr(run, "pids", {})
        if any(session_members(pid) for pid in pids.values()):
            run("stop", "--stop-wait", "10", timeout=120)
        for pid in pids.values():  # a stop that failed: this test's own nodes, by pid
            for member in session_members(pid):
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if keep_logs is not None:
            for logs in temp_root.glob("*/session_2*/logs"):  # <role>/session_<time>/logs
                shutil.copytree(logs, keep_logs / logs.parent.parent.name / logs.parent.name, symlinks=True,
                                ignore_dangling_symlinks=True)
        shutil.rmtree(temp_root, ignore_errors=True)
