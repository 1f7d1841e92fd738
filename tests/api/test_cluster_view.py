"""api/cluster.py against a real local Ray head with its dashboard: each node's resources in all and
free (a task and a placement group holding some), kept a few seconds, and a dashboard that does not
answer as a clear error (and, for the launch checks, as no node list)."""

import time

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group

from api.cluster import ClusterUnavailable, ClusterView, alive_totals
from api.ports import free_port
from tests.helpers.dashboard import dashboard_head

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def dashboard():
    """A head with 2 CPUs and 2 (fake) GPUs, its dashboard on a free port, this process connected."""
    with dashboard_head(num_cpus=2, num_gpus=2) as url:
        yield url


def settled(view: ClusterView, expected: dict[str, float], timeout: float = 30.0):
    """The view's one node once its free resources are ``expected`` (usage is reported every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            [node] = view.nodes()
            if {k: node.available.get(k) for k in expected} == expected:
                return node
        except ClusterUnavailable:  # the dashboard's HTTP server is still starting
            node = None
        if time.monotonic() > deadline:
            raise AssertionError(f"no node with free {expected} in {timeout} s: {node}")
        time.sleep(0.5)


@ray.remote(num_gpus=1, num_cpus=0)
def hold_a_gpu(seconds: float) -> None:
    time.sleep(seconds)


def test_nodes_give_each_nodes_total_and_free_resources_kept_for_cache_seconds(dashboard):
    view = ClusterView(dashboard, cache_seconds=0)
    idle = settled(view, {"CPU": 2.0, "GPU": 2.0})
    assert idle.alive and idle.node_id == ray.get_runtime_context().get_node_id()
    assert {k: idle.total[k] for k in ("CPU", "GPU")} == {"CPU": 2.0, "GPU": 2.0}
    assert alive_totals(dashboard) == [idle.total]
    now = [0.0]
    kept = ClusterView(dashboard, cache_seconds=5.0, clock=lambda: now[0])
    assert kept.nodes()[0].available["GPU"] == 2.0

    running = hold_a_gpu.remote(60)
    # a placement group's reservation is not free, though Ray's usage report counts it so until used
    group = placement_group([{"CPU": 1.0}])
    ray.get(group.ready())
    busy = settled(view, {"CPU": 1.0, "GPU": 1.0})
    assert busy.total == idle.total
    assert kept.nodes()[0].available["GPU"] == 2.0  # asked 0 s ago: the answer is kept ...
    now[0] = 5.0
    assert kept.nodes()[0].available == busy.available  # ... for 5 s
    ray.cancel(running, force=True)
    remove_placement_group(group)


def test_a_dashboard_that_does_not_answer_is_a_clear_error_and_no_node_list(caplog):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    view = ClusterView(address)
    with pytest.raises(ClusterUnavailable, match=f"the Ray dashboard at http://{address} gave no node list"):
        view.nodes()
    assert alive_totals(address) is None
    assert "the grid's resources are not checked against the nodes" in caplog.text
