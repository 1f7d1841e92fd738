"""What a test needs, as markers, and a watch on what it starts (used by tests/conftest.py).

``ray`` starts a real Ray (a node in this process, a cluster, or a command that runs one),
``service`` starts ``adf-service serve`` (a real uvicorn server), ``postgres`` needs a
PostgreSQL server. A test gets them from the fixtures it uses (:data:`FIXTURE_MARKS`, and
``db_url``'s ``postgresql`` parameter), or from an explicit ``pytestmark`` where it starts one
without such a fixture. While a test runs, every process it starts is looked at (an audit
hook on ``subprocess.Popen``): a Ray node, ``ray start`` or an ``adf-service`` command that
runs Ray or the server, started by a test without the marker, fails that test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

__all__ = ["FIXTURE_MARKS", "Watch", "audit", "needs"]

FIXTURE_MARKS = {
    "local_ray": "ray",  # tests/trials: ray.init() in this process
    "cluster": "ray",  # tests/trials/test_multinode.py: ray.cluster_utils.Cluster
    "ray_dashboard": "ray",  # tests/api/conftest.py: a Ray head with its dashboard
    "live": "service",  # tests/api/conftest.py: `adf-service serve` over ray_dashboard
    "postgres_server": "postgres",  # tests/api/conftest.py: a throwaway PostgreSQL server
}
RAY_PROCESSES = {"gcs_server", "raylet"}  # what starting a Ray node runs (ray.init, Cluster, `ray start`)
ADF_COMMANDS = {"serve": "service", "local-job": "ray", "run": "ray", "run-job": "ray"}


def needs(item: pytest.Item) -> set[str]:
    """The markers ``item`` gets from its fixtures (their whole closure) and parameters."""
    marks = {FIXTURE_MARKS[name] for name in getattr(item, "fixturenames", ()) if name in FIXTURE_MARKS}
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("db_url") == "postgresql":
        marks.add("postgres")
    return marks


def started(executable: str | bytes | os.PathLike | None, argv: object) -> tuple[str, str] | None:
    """(what, the marker it needs) for a process that starts Ray or the service; None for others."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        words = [os.fsdecode(argv)]
    elif isinstance(argv, Iterable):
        words = [os.fsdecode(word) for word in argv]
    else:
        return None
    if executable is None and not words:
        return None
    program = Path(os.fsdecode(executable if executable is not None else words[0])).name
    if program in RAY_PROCESSES:
        return program, "ray"
    if program == "ray" and "start" in words[1:]:
        return "ray start", "ray"
    if program == "adf-service" and len(words) > 1 and words[1] in ADF_COMMANDS:
        return f"adf-service {words[1]}", ADF_COMMANDS[words[1]]
    return None


class Watch:
    """The markers of the test now running, and what it started that they do not allow."""

    allowed: set[str] | None = None  # None: no test is running
    unmarked: list[str] = []

    @classmethod
    def begin(cls, markers: Iterable[str]) -> None:
        cls.allowed, cls.unmarked = set(markers), []

    @classmethod
    def end(cls) -> list[str]:
        """What the test started without its marker, each once; the watch stops."""
        unmarked, cls.allowed, cls.unmarked = list(dict.fromkeys(cls.unmarked)), None, []
        return unmarked


def audit(event: str, args: tuple) -> None:
    """A ``sys.addaudithook`` hook: notes a process the running test starts without its marker."""
    if event != "subprocess.Popen" or Watch.allowed is None:
        return
    found = started(args[0], args[1])
    if found is not None and found[1] not in Watch.allowed:
        Watch.unmarked.append(f"{found[0]} (needs the `{found[1]}` marker)")
