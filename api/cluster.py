"""The Ray cluster's nodes as its dashboard reports them: what each has in all and what is free.

The service is no Ray driver: it reads the cluster over the dashboard's HTTP API, as it runs jobs
over the Jobs API (api/runner.py), with the same token when the cluster has token authentication
on. ``GET /nodes?view=summary`` is the one answer with both per node: the summary lists every node
(alive or dead, with its total resources) and ``nodeLogicalResources`` each reporting node's usage
as Ray's status lines (``"1.0/2.0 GPU (0.0 used of 1.0 reserved in placement groups)"``). The
launch checks (``trials.checks``, at submit) read the totals; the queue (api/queue.py) the free
resources. Answers are kept a few seconds, so a burst of submissions asks the dashboard once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import httpx

__all__ = ["ClusterUnavailable", "ClusterView", "NodeResources", "alive_totals", "cluster_view"]

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0  # how long an answer (nodes, or no answer) is kept
TIMEOUT_SECONDS = 3.0  # the submit path waits at most this for the dashboard

# One line of Ray's usage report: "used/total name", then placement groups' part of it, if any.
_NUMBER = r"[0-9.e+-]+"
_USAGE = re.compile(rf"^(?P<used>{_NUMBER})/(?P<total>{_NUMBER}) (?P<name>\S+)"
                    rf"(?: \((?P<pg_used>{_NUMBER}) used of (?P<pg_total>{_NUMBER}) reserved in "
                    r"placement groups\))?$")
_UNCOUNTED = ("memory", "objectStoreMemory", "object_store_memory")  # in bytes: no trial asks for them here


class ClusterUnavailable(RuntimeError):
    """The Ray dashboard did not answer, or answered something that is not a node list."""


@dataclass(frozen=True)
class NodeResources:
    """One node of the cluster: its resources in all (``{"CPU": 8.0, "GPU": 1.0}``) and free now.

    ``available`` is empty while the node has not reported its usage yet (a node that just joined,
    or a cluster whose GCS gives no usage): unknown, not nothing free.
    """

    node_id: str
    alive: bool
    total: dict[str, float]
    available: dict[str, float]


class ClusterView:
    """The nodes of the cluster whose dashboard is at ``address`` (``http://head:8265``)."""

    def __init__(self, address: str, *, cache_seconds: float = CACHE_SECONDS,
                 timeout: float = TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = (address if "://" in address else f"http://{address}").rstrip("/")
        self.cache_seconds, self.timeout, self.clock = cache_seconds, timeout, clock
        self._lock = threading.Lock()
        self._asked_at: float | None = None
        self._answer: list[NodeResources] | str = []  # the nodes, or why the dashboard gave none

    def nodes(self) -> list[NodeResources]:
        """Every node the dashboard knows, alive or not; at most ``cache_seconds`` old.

        Raises ClusterUnavailable, naming the address and why, when the dashboard does not answer
        (the same error again until ``cache_seconds`` have passed).
        """
        with self._lock:
            now = self.clock()
            if self._asked_at is None or now - self._asked_at >= self.cache_seconds:
                try:
                    self._answer = self._read()
                except ClusterUnavailable as exc:
                    self._answer = str(exc)
                self._asked_at = now
            if isinstance(self._answer, str):
                raise ClusterUnavailable(self._answer)
            return list(self._answer)

    def _read(self) -> list[NodeResources]:
        url = f"{self.address}/nodes?view=summary"
        try:
            response = httpx.get(url, headers=_ray_auth_headers(), timeout=self.timeout)
            response.raise_for_status()
            data = response.json()["data"]
            return [_node(summary, data.get("nodeLogicalResources") or {}) for summary in data["summary"]]
        except httpx.HTTPError as exc:
            why = f"gave no node list: {exc}"
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not a summary
            why = f"answered {url} with something that is no node list ({type(exc).__name__}: {exc})"
        raise ClusterUnavailable(f"the Ray dashboard at {self.address} {why}")


def _ray_auth_headers() -> dict[str, str]:
    """Ray's token header when this process has token authentication on (as the Jobs API client sends it)."""
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    return dict(get_auth_headers_if_auth_enabled({}))


def _node(summary: dict, usage_lines: dict[str, str]) -> NodeResources:
    """A node from its summary and its usage report (when it has one)."""
    raylet = summary["raylet"]
    node_id = raylet["nodeId"]
    usage = _usage(usage_lines.get(node_id, ""))
    if usage:
        total = {name: t for name, (_, t) in usage.items()}
        available = {name: max(t - used, 0.0) for name, (used, t) in usage.items()}
    else:  # no report yet: the totals as the summary has them (which camelCases names with "_")
        total = {name: float(v) for name, v in (raylet.get("resourcesTotal") or {}).items()
                 if not name.startswith("node:") and name not in _UNCOUNTED}
        available = {}
    return NodeResources(node_id, raylet.get("state") == "ALIVE", total, available)


def _usage(lines: str) -> dict[str, tuple[float, float]]:
    """``{name: (used, total)}`` from a node's usage report; memory (given with units) is left out.

    Ray's report counts resources that placement groups reserve but do not use as free; a trial's
    placement group holds them all the same, so they are counted as used here.
    """
    usage = {}
    for line in lines.splitlines():
        match = _USAGE.match(line.strip())
        if match is None:
            continue
        used, total = float(match["used"]), float(match["total"])
        if match["pg_total"] is not None:
            used += float(match["pg_total"]) - float(match["pg_used"])
        usage[match["name"]] = (used, total)
    return usage


@lru_cache(maxsize=8)
def cluster_view(address: str) -> ClusterView:
    """The process' one view of the cluster at ``address``: every caller shares its cached answer."""
    return ClusterView(address)


def alive_totals(address: str | None) -> list[dict[str, float]] | None:
    """Each alive node's total resources, for the launch checks; None (logged) when they cannot be read,
    and then the checks skip the question of whether a trial fits a node."""
    if not address:
        return None
    try:
        nodes = cluster_view(address).nodes()
    except ClusterUnavailable as exc:
        log.warning("%s: the grid's resources are not checked against the nodes", exc)
        return None
    return [node.total for node in nodes if node.alive]
