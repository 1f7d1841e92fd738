"""Trials that wait for resources no node gives them: noticed in a minute, reported, waited for or failed.

Ray Tune keeps a trial PENDING for as long as no node can hold its request, and says so only in a
warning in the driver's log (ray#23858: a run that hangs on a request no node can meet). The
:class:`PendingWatch` callback notices when the job's trials have waited longer than a grace
(:data:`GRACE_SECONDS`, ``ADF_PENDING_GRACE_S``) with none of them running, and writes what a trial
asks, what the alive nodes have and what is free into ``<job>/pending.json`` (:data:`PENDING_FILE`),
which the service shows as the job's notice (:func:`pending_notice`, no Ray here). When no alive node
can hold a trial at all, ``resources.when_unschedulable`` decides: ``fail`` stops the job at once,
``wait`` gives the cluster ``resources.pending_timeout_s`` to grow (an autoscaler adding a GPU node)
and then stops it; the job fails with :class:`Unschedulable`, whose message says the same. Once
trials run again the file is removed. When nodes could hold a trial but their resources are taken
(by other jobs), or the trials' workers are slow to start, the job is reported as waiting and
never failed for it.

``PendingWatch`` subclasses Ray Tune's Callback and is made on first use (module ``__getattr__``):
the service imports this module for :func:`pending_notice` and never loads Ray Tune for it.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Mapping, Sequence
from typing import Any

from trials.checks import describe_amounts, describe_nodes, fits
from trials.grid_sections import ResourceSpec
from trials.storage import JobStorage

__all__ = [
    "GRACE_ENV",
    "GRACE_SECONDS",
    "PENDING_FILE",
    "PendingWatch",
    "Unschedulable",
    "pending_notice",
    "pending_report",
    "read_pending",
]

PENDING_FILE = "pending.json"  # the job's waiting trials: what they ask, what the cluster has (docs/grid.md)
GRACE_SECONDS = 60.0  # trials waiting this long with none running are reported; a worker starts in seconds
GRACE_ENV = "ADF_PENDING_GRACE_S"  # sets the grace (the tests' few seconds)
CHECK_SECONDS = 5.0  # while trials wait, the cluster is asked again this often
_COUNTED = ("CPU", "GPU")  # what a grid's trial asks for (resources.cpus_per_trial, gpus_per_trial)

PendingWatch: type  # made by the module's __getattr__ on first use (see the module docstring)


class Unschedulable(RuntimeError):
    """No alive node can hold the job's trials, and ``resources.when_unschedulable`` stops the wait."""


def pending_report(asked: Mapping[str, float], nodes: Sequence[Mapping[str, float]],
                   available: Mapping[str, float], *, since: float, now: float,
                   resources: ResourceSpec) -> dict[str, Any]:
    """What ``pending.json`` says: trials waiting since ``since`` (epoch seconds), each asking ``asked``
    of one node; ``nodes``: the alive nodes' totals; ``available``: what the cluster has free.

    ``fail`` is whether the job stops now: no node can ever hold a trial and the grid's policy
    (``when_unschedulable``, ``pending_timeout_s``) has run out.
    """
    free = {k: available.get(k, 0.0) for k in _COUNTED}
    each = f"each trial asks for {describe_amounts(asked, ' and ')} on one node"
    unschedulable = not any(fits(asked, node) for node in nodes)
    fails_at = None
    if not unschedulable:
        fail = False
        why = ("has that free: waiting for their workers to start" if fits(asked, free) else
               "has that, but not free: waiting for other work to end")
        message = (f"trials have waited {now - since:.0f} s with none running: {each}, and the cluster "
                   f"({describe_nodes(nodes)}; free now: {describe_amounts(free)}) {why}")
    else:
        if resources.when_unschedulable == "fail":
            fail, policy = True, f"the trials waited {now - since:.0f} s (resources.when_unschedulable: fail)"
        else:
            fails_at = since + resources.pending_timeout_s
            fail, policy = now >= fails_at, _waiting(fails_at - now, resources.pending_timeout_s)
        message = (f"no alive node can run a trial: {each}, and the cluster has {describe_nodes(nodes)} "
                   f"(free now: {describe_amounts(free)}); {policy}")
    return {"since": since, "updated_at": now, "asked": dict(asked),
            "nodes": [{k: node.get(k, 0.0) for k in _COUNTED} for node in nodes], "available": free,
            "unschedulable": unschedulable, "fails_at": fails_at, "fail": fail, "message": message}


def _waiting(left: float, timeout: float) -> str:
    """How ``when_unschedulable: wait`` goes on, ``left`` seconds before ``pending_timeout_s`` runs out."""
    if left <= 0:
        return f"no such node came in {timeout:g} s (resources.pending_timeout_s)"
    return (f"waiting for the cluster to add one, {left:.0f} s more, then the job fails "
            f"(resources.when_unschedulable: wait, pending_timeout_s: {timeout:g})")


def read_pending(storage: JobStorage) -> dict[str, Any] | None:
    """The job's ``pending.json``, or None while its trials do not wait (or it cannot be read)."""
    try:
        return json.loads(storage.read_text(PENDING_FILE))
    except (OSError, ValueError):  # FileNotFoundError, a half-made object store, not JSON
        return None


def pending_notice(storage: JobStorage) -> str | None:
    """Why the job's trials wait, for its status (the service's job notice); None when they do not."""
    report = read_pending(storage)
    message = report.get("message") if isinstance(report, dict) else None
    return message if isinstance(message, str) else None


def _grace() -> float:
    return float(os.environ.get(GRACE_ENV, GRACE_SECONDS))


def _watch_class() -> type:
    """PendingWatch, a Ray Tune Callback: defined when first asked for, as Ray Tune is imported only then."""
    import ray
    from ray import tune
    from ray.tune.experiment import Trial

    class PendingWatch(tune.Callback):
        """Notices a job's trials waiting for resources, reports them in ``pending.json``, fails the job
        when no node can hold them and the grid says so (module docstring); on the job's driver.

        Args:
            storage: the job's storage, where ``pending.json`` goes.
            resources: the grid's ``resources`` (``when_unschedulable``, ``pending_timeout_s``).
            grace_s: how long trials wait, none running, before they are reported; None:
                ``ADF_PENDING_GRACE_S``, else :data:`GRACE_SECONDS`.
        """

        def __init__(self, storage: JobStorage, resources: ResourceSpec, *, grace_s: float | None = None):
            self.storage, self.resources = storage, resources
            self.grace_s = _grace() if grace_s is None else grace_s
            self.since: float | None = None  # since when trials wait with none running
            self.checked = 0.0
            self.reported = True  # a file an earlier driver of the job left is removed too
            self.failed = False

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            pending = [t for t in trials if t.status == Trial.PENDING]
            if not pending or any(t.status == Trial.RUNNING for t in trials):
                self._clear()
                return
            now = time.time()
            self.since = self.since or now
            if now - self.since < self.grace_s or now - self.checked < CHECK_SECONDS:
                return
            self.checked = now
            wanted = pending[0].placement_group_factory.required_resources
            asked = {name: float(wanted.get(name, 0.0)) for name in _COUNTED}
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            report = pending_report(asked, nodes, ray.available_resources(), since=self.since, now=now,
                                    resources=self.resources)
            self.storage.write_text(PENDING_FILE, json.dumps(report, indent=1))
            self.reported = True
            if report["fail"]:
                self.failed = True
                raise Unschedulable(report["message"])

        def _clear(self) -> None:
            """Trials run (or none waits): the wait is over, and so is its report; a failure's stays."""
            self.since = None
            if self.reported and not self.failed:
                if self.storage.exists(PENDING_FILE):
                    self.storage.filesystem.delete_file(posixpath.join(self.storage.path, PENDING_FILE))
                self.reported = False

    PendingWatch.__qualname__ = "PendingWatch"  # pickled by reference, as trials.pending.PendingWatch
    PendingWatch.__module__ = __name__
    return PendingWatch


def __getattr__(name: str) -> Any:
    if name == "PendingWatch":
        globals()[name] = _watch_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
