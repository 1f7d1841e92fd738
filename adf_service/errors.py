"""The library's errors that a user's input causes: a command reports them as one line, not a traceback.

Importing this imports torch: a command imports it inside its body, when it runs.
"""

from __future__ import annotations

from adf_service.features.store import FeatureStoreError
from adf_service.genotype import GenotypeError
from adf_service.space import SearchSpaceError
from adf_service.train import CheckpointError, TrainingDiverged

__all__ = ["USER_ERRORS"]

# Every extraction and dataset error is a ValueError naming what is wrong.
USER_ERRORS: tuple[type[Exception], ...] = (
    FeatureStoreError,
    GenotypeError,
    SearchSpaceError,
    CheckpointError,
    TrainingDiverged,
    ValueError,
)
