"""The dataset a grid names: open it, or generate it when the grid asks for synthetic data."""

from __future__ import annotations

from pathlib import Path

from adf_service.features.store import FeatureStore, FeatureStoreError
from adf_service.features.synth import generate_synthetic_store
from trials.spec import GridSpec

__all__ = ["ensure_dataset"]


def ensure_dataset(spec: GridSpec) -> FeatureStore:
    """Open ``dataset.store``; if it is missing and ``dataset.synthetic`` is set, generate it.

    Raises FeatureStoreError naming the path when it is not a usable feature store.
    """
    path = Path(spec.dataset.store)
    synthetic = spec.dataset.synthetic
    if not path.exists() and synthetic is not None:
        return generate_synthetic_store(path, **synthetic.store_arguments())
    try:
        store = FeatureStore.open(path)
    except FeatureStoreError as exc:
        raise FeatureStoreError(f"dataset.store: {exc}") from None
    missing = set(spec.dataset.modalities or []) - set(store.modalities)
    if missing:
        raise FeatureStoreError(
            f"dataset.modalities: {sorted(missing)} not in store {path} "
            f"(it has {', '.join(store.modalities)})"
        )
    return store
