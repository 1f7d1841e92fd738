import pytest

from adf_service.features import generate_synthetic_store


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A tiny synthetic feature store shared by the trials tests (read-only)."""
    return generate_synthetic_store(
        tmp_path_factory.mktemp("trials") / "store", n_train=48, n_test=24, n_classes=3, seed=4,
        channels=(8, 8, 4), spatial=(2, 4, 4),
    )
