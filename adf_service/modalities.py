"""The thesis' modality streams and the late-fusion baseline's combinations of them.

One home for the vocabulary that the feature store, the synthetic data, the extraction,
the grid spec and the demo share.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BASELINE_COMBOS", "MODALITIES", "combo_name"]

MODALITIES = ("rgb", "flow", "pose")  # the thesis' streams, in the fusion network's input order

# Thesis §5.2.3: the seven modality combinations of the late-fusion baseline.
BASELINE_COMBOS: tuple[tuple[str, ...], ...] = (
    ("rgb",),
    ("flow",),
    ("pose",),
    ("rgb", "flow"),
    ("rgb", "pose"),
    ("flow", "pose"),
    ("rgb", "flow", "pose"),
)


def combo_name(modalities: Iterable[str]) -> str:
    """``("rgb", "flow")`` → ``"R+F"``: the thesis' Table 3 names."""
    return "+".join(m[0].upper() for m in modalities)
