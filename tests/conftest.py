"""Markers say what a test needs: ``ray``, ``service`` and ``postgres`` from the fixtures it
uses (tests/helpers/markers.py), ``slow``, ``cluster`` and ``faults`` by hand, and those three run
only when ``-m`` names them. ``pytest -m "not ray and not service and not postgres"`` (``make test-fast``)
is the inner loop; a test that starts Ray or the service without its marker fails, so a missing
marker shows at once.
"""

import re
import sys

import pytest

from adf_service.train.runtime import keep_freed_memory_in_heap
from tests.helpers.markers import FIXTURE_MARKS, Watch, audit, needs

# CPU training on this kind of VM is 10–100× slower without it (see the function's docstring).
keep_freed_memory_in_heap()


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(audit)


@pytest.hookimpl(tryfirst=True)  # before the mark plugin selects by -m
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in sorted(needs(item)):
            item.add_marker(mark)
    for name in ("slow", "cluster", "faults"):  # `pytest`, `pytest -m "not ray"`: none unless -m names it
        if re.search(rf"\b{name}\b", config.getoption("markexpr") or ""):
            continue
        left_out = [item for item in items if item.get_closest_marker(name)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker(name)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    Watch.begin(mark.name for mark in item.iter_markers())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    try:
        return (yield)
    finally:
        unmarked = Watch.end()
        if unmarked:
            pytest.fail(f"{item.nodeid} started {', '.join(unmarked)}: use a fixture that starts it "
                        f"({', '.join(FIXTURE_MARKS)}) or mark the test", pytrace=False)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A tiny synthetic feature store shared by the Ray and service tests (read-only)."""
    from adf_service.features import generate_synthetic_store

    return generate_synthetic_store(
        tmp_path_factory.mktemp("trials") / "store", n_train=48, n_test=24, n_classes=3, seed=4,
        channels=(8, 8, 4), spatial=(2, 4, 4),
    )
