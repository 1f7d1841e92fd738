"""The AutoDeepFuse search space: operator sets S1/S2 and the macro-architecture axes.

Thesis §4.2: a fusion network is ``n_cells`` cells (thesis "C" ∈ {1..4}); each cell has
``n_inputs`` input nodes (thesis "I" ∈ {1,2,3}) and 4 hidden nodes, each hidden node fed by
all inputs and all earlier hidden nodes; every edge is a PC-DARTS mixed op over an operator
set (tables 1 and 2) on ``channels / partial_k`` channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from adf_service.ops import OPS

__all__ = [
    "DISCRETIZATIONS",
    "MIN_MIXED_OP_CHANNELS",
    "N_NODES",
    "OPERATOR_SETS",
    "SearchSpace",
    "SearchSpaceError",
    "edges_per_cell",
    "mixed_op_channels",
    "node_edge_slices",
]

OPERATOR_SETS: dict[str, tuple[str, ...]] = {
    # Table 1: operators conventionally used for video.
    "S1": (
        "conv_1x1x1",
        "conv_3x3x3",
        "sep_conv_3x3x3",
        "dil_conv_3x3x3",
        "conv_2plus1d_3x3x3",
        "skip",
        "zero",
    ),
    # Table 2: fewer parameters: no full 3×3×3 / dilated conv, narrow (2+1)D, flattened conv.
    "S2": (
        "conv_1x1x1",
        "sep_conv_3x3x3",
        "conv_2plus1d_3x3x3_narrow",
        "flat_conv_3x3x3",
        "skip",
        "zero",
    ),
}
assert all(name in OPS for ops in OPERATOR_SETS.values() for name in ops)

DISCRETIZATIONS = ("all", "topk")  # thesis §4.2.3
N_NODES = 4  # hidden nodes per cell, thesis §4.1.3
INPUTS_RANGE = (1, 2, 3)  # thesis §5.2.1: I ∈ {1,2,3}
CELLS_RANGE = (1, 2, 3, 4)  # thesis §5.2.1: C ∈ {1,2,3,4}
MIN_MIXED_OP_CHANNELS = 16
"""Fewest channels C/K a mixed op should get: at C = 16, K = 4 (4 channels) no supernet learned (issue 12)."""


class SearchSpaceError(ValueError):
    """A search-space setting outside what the thesis (and this code) supports."""


def edges_per_cell(n_inputs: int, n_nodes: int = N_NODES) -> int:
    """M = Σ_j (I + j) = 4(I−1)+10 for 4 hidden nodes."""
    return sum(n_inputs + j for j in range(n_nodes))


def mixed_op_channels(channels: int, partial_k: int) -> int:
    """Channels C/K that go through each PC-DARTS mixed op; the other C − C/K bypass it."""
    if channels < 1 or partial_k < 1 or channels % partial_k:
        raise SearchSpaceError(
            f"partial_k K={partial_k} and channels={channels}: both must be positive and K must "
            f"divide the channels"
        )
    return channels // partial_k


def node_edge_slices(n_inputs: int, n_nodes: int = N_NODES) -> list[slice]:
    """For each hidden node j, the slice of the cell's edge list that feeds it.

    Edges are ordered node by node; node j's edges come from states 0..I+j−1, where
    states 0..I−1 are the cell inputs and state I+k is hidden node k.
    """
    slices, start = [], 0
    for j in range(n_nodes):
        slices.append(slice(start, start + n_inputs + j))
        start += n_inputs + j
    return slices


@dataclass(frozen=True)
class SearchSpace:
    """One setting of the search space (the fixed part of a search run)."""

    operators: str = "S2"
    n_inputs: int = 2  # thesis I
    n_cells: int = 2  # thesis C
    channels: int = 512  # fusion width after the stem, docs/design.md §2
    partial_k: int = 4  # PC-DARTS K: 1/K of the channels go through the mixed op, thesis §5.2.2

    def __post_init__(self) -> None:
        if self.operators not in OPERATOR_SETS:
            raise SearchSpaceError(
                f"operators {self.operators!r} not in {{{', '.join(OPERATOR_SETS)}}}"
            )
        if self.n_inputs not in INPUTS_RANGE:
            raise SearchSpaceError(f"inputs I={self.n_inputs!r} not in {set(INPUTS_RANGE)}")
        if self.n_cells not in CELLS_RANGE:
            raise SearchSpaceError(f"cells C={self.n_cells!r} not in {set(CELLS_RANGE)}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise SearchSpaceError(f"channels={self.channels!r} must be a positive integer")
        if not isinstance(self.partial_k, int) or self.partial_k < 1:
            raise SearchSpaceError(f"partial_k K={self.partial_k!r} must be a positive integer")
        if self.channels % self.partial_k:
            raise SearchSpaceError(
                f"partial_k K={self.partial_k} does not divide channels={self.channels}: "
                f"PC-DARTS sends channels/K to the mixed op, so K must divide the channels"
            )

    @property
    def op_names(self) -> tuple[str, ...]:
        return OPERATOR_SETS[self.operators]

    @property
    def edges_per_cell(self) -> int:
        return edges_per_cell(self.n_inputs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SearchSpaceError(f"unknown search-space keys: {sorted(unknown)}")
        return cls(**data)
