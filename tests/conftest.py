import pytest

from adf_service.train.runtime import keep_freed_memory_in_heap

# CPU training on this kind of VM is 10–100× slower without it (see the function's docstring).
keep_freed_memory_in_heap()


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A tiny synthetic feature store shared by the Ray and service tests (read-only)."""
    from adf_service.features import generate_synthetic_store

    return generate_synthetic_store(
        tmp_path_factory.mktemp("trials") / "store", n_train=48, n_test=24, n_classes=3, seed=4,
        channels=(8, 8, 4), spatial=(2, 4, 4),
    )
