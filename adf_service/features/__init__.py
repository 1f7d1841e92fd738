"""Features: the on-disk feature store, the ClipSet view training consumes, synthetic data.

- :class:`FeatureStoreWriter` writes a store (Arrow IPC file + ``manifest.json``);
- :class:`FeatureStore` opens one, memory-mapped and validated;
- :class:`ClipSet` selects a split, layer and modalities and yields mini-batches;
- :func:`generate_synthetic_store` writes the "what moves where" benchmark (layouts
  ``LAYOUTS``); :func:`synthetic_scenes` says what it puts where.

See docs/feature-store.md and docs/synthetic-data.md.
"""

from adf_service.features.dataset import ClipSet
from adf_service.features.manifest import (
    FUSION_LAYER,
    TRAIN_SPLIT,
    FeatureStoreError,
    Manifest,
)
from adf_service.features.store import FeatureStore
from adf_service.features.synth import (
    LAYOUTS,
    SyntheticDataError,
    SynthSpec,
    generate_synthetic_store,
    synthetic_scenes,
)
from adf_service.features.writer import FeatureStoreWriter

__all__ = [
    "FUSION_LAYER",
    "LAYOUTS",
    "TRAIN_SPLIT",
    "ClipSet",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureStoreWriter",
    "Manifest",
    "SynthSpec",
    "SyntheticDataError",
    "generate_synthetic_store",
    "synthetic_scenes",
]
