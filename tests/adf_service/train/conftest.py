import pytest

from adf_service.features import ClipSet, generate_synthetic_store
from adf_service.space import SearchSpace
from adf_service.train import SearchConfig

TINY_SPACE = SearchSpace("S2", n_inputs=2, n_cells=2, channels=8, partial_k=4)


@pytest.fixture
def tiny_space() -> SearchSpace:
    return TINY_SPACE


@pytest.fixture
def search_config():
    """``search_config(**overrides)``: a fast search on the tiny store."""

    def make(**overrides) -> SearchConfig:
        settings = dict(epochs=3, warmup_epochs=1, batch_size=16, lr=0.05, arch_lr=3e-3, seed=7)
        settings.update(overrides)
        return SearchConfig(**settings)

    return make


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    return generate_synthetic_store(
        tmp_path_factory.mktemp("tiny") / "store",
        n_train=64, n_test=32, n_classes=3, seed=1,
        channels=(8, 8, 4), spatial=(2, 4, 4), noise=0.5,
    )


@pytest.fixture
def tiny_clips(tiny_store):
    return ClipSet.of(tiny_store, "train", "layer3")
