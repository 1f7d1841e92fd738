"""Fixtures of the grid tests that run on Ray."""

import pytest
import ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs in this process, for one test module (marked `ray`: tests/helpers/markers.py)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
