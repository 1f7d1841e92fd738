"""A real local Ray head with its dashboard (the Jobs API and the node list the service reads), this
process connected to it: the fixtures of tests/api that need a cluster with given CPUs and GPUs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["dashboard_head"]


@contextmanager
def dashboard_head(num_cpus: int = 2, num_gpus: int = 0) -> Iterator[str]:
    """The dashboard's URL of a head with ``num_cpus`` CPUs and ``num_gpus`` fake GPUs; shut down after.

    The dashboard agent gets a free port: under a plain ``ray.init`` it takes 52365, and where another
    Ray holds that port the agent runs without its HTTP server and every submission fails ("No
    available agent").
    """
    import ray
    from ray.cluster_utils import Cluster

    from api.ports import free_port

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": num_cpus, "num_gpus": num_gpus, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": port, "dashboard_agent_listen_port": free_port(),
    })
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ray.shutdown()
        cluster.shutdown()
