"""The local Ray head `adf-service serve` starts when no Ray address is configured.

It is ``ray start --head --block`` in a session of its own: it outlives the server, so jobs
keep running across a server restart, and it ends when the process whose pid it recorded
in the data directory gets SIGTERM (``adf-service stop-ray``): ``--block`` then shuts down
every process of the head. Nothing is stopped by name.

``ray start`` records the head's GCS address in Ray's temp directory (``ray_current_cluster``),
and ``ray.init()`` without an address joins the cluster recorded there, dead or alive. A
head stopped with SIGTERM does not clear that record, so ``stop-ray`` does: it removes the
record when it names the GCS port this head was started with (kept in ``GCS_PORT_FILE``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from api.runner import RayJobs

__all__ = [
    "GCS_PORT_FILE",
    "LOG_FILE",
    "PID_FILE",
    "LocalRayError",
    "ray_cluster_record",
    "start_local_ray",
    "stop_local_ray",
]

PID_FILE = "ray-head.pid"
GCS_PORT_FILE = "ray-head.gcs-port"
LOG_FILE = "ray-head.log"


class LocalRayError(RuntimeError):
    """The local Ray head did not start, or its pid file names no head."""


def _ray() -> str:
    script = Path(sys.executable).with_name("ray")
    return str(script) if script.exists() else shutil.which("ray") or "ray"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc here: the signal reached it
        return True


def _is_ray_head(pid: int) -> bool:
    """Whether ``pid`` still runs ``ray start --head`` (not a reused pid); True where /proc is missing."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return _alive(pid)
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in args and b"--head" in args


def start_local_ray(data_dir: Path, port: int, *, wait: float = 120.0) -> str:
    """The dashboard URL of a local Ray head on ``port``; one is started if none answers there.

    Call it before this process imports Ray: Ray reads its auth mode (RAY_AUTH_MODE, which
    this sets when a token exists) once, when it is first imported.
    """
    url = f"http://127.0.0.1:{port}"
    # Ray 2.60 turns token auth on for a head started while ~/.ray/auth_token exists; its Jobs
    # API client sends the token only when told that auth is on.
    if Path("~/.ray/auth_token").expanduser().exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    head = RayJobs(url)
    if head.reachable():
        return url
    from api.ports import free_port

    data_dir.mkdir(parents=True, exist_ok=True)
    gcs_port = free_port()
    command = [_ray(), "start", "--head", "--block", "--disable-usage-stats", f"--port={gcs_port}",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={port}",
               f"--dashboard-agent-listen-port={free_port()}"]
    log_path = data_dir / LOG_FILE
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # Ctrl-C on the server leaves it running
    (data_dir / PID_FILE).write_text(f"{process.pid}\n")
    (data_dir / GCS_PORT_FILE).write_text(f"{gcs_port}\n")
    deadline = time.monotonic() + wait
    while not head.reachable():
        if process.poll() is not None:
            raise LocalRayError(f"`{' '.join(command)}` exited with {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise LocalRayError(f"the local Ray head's dashboard did not answer at {url} in {wait:.0f} s; "
                                f"see {log_path}")
        time.sleep(0.5)
    return url


def stop_local_ray(data_dir: Path, *, wait: float = 60.0) -> int | None:
    """Stop the head :func:`start_local_ray` recorded under ``data_dir``: its pid, or None if none runs."""
    pid_file = data_dir / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        raise LocalRayError(f"{pid_file}: not a process id") from None
    if not (_alive(pid) and _is_ray_head(pid)):
        _forget_head(data_dir)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(pid):
        if time.monotonic() > deadline:
            raise LocalRayError(f"the local Ray head (pid {pid}) still runs {wait:.0f} s after SIGTERM")
        time.sleep(0.2)
    _forget_head(data_dir)
    return pid


def ray_cluster_record() -> Path:
    """Ray's record of the cluster ``ray start`` started last on this machine (under ``RAY_TMPDIR``)."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _forget_head(data_dir: Path) -> None:
    """Remove the stopped (or dead) head's pid file, and Ray's record of it if that names its GCS port."""
    (data_dir / PID_FILE).unlink(missing_ok=True)
    port_file = data_dir / GCS_PORT_FILE
    try:
        port = port_file.read_text().strip()
    except FileNotFoundError:  # a head started before this file existed: its record stays
        return
    record = ray_cluster_record()
    try:
        recorded = record.read_text().strip()
    except FileNotFoundError:
        recorded = ""
    if port and recorded.rpartition(":")[2] == port:
        record.unlink(missing_ok=True)
    port_file.unlink()
