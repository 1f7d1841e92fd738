"""Sizes of a search-space setting: per-operator weights, edges per cell, supernet size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adf_service.fusion import count_parameters
from adf_service.ops import conv_weight_count, create_op
from adf_service.space import SearchSpace
from adf_service.supernet import SearchNetwork

__all__ = ["SpaceSummary", "summarize_space"]

HMDB51_LAYER3_CHANNELS = (1024, 1024, 256)  # RGB R(2+1)D-50, flow ResNeXt-101, pose ResNet-18


@dataclass(frozen=True)
class SpaceSummary:
    space: SearchSpace
    operators: dict[str, int]  # op name → conv weights at `space.channels` (tables 1, 2)
    edges_per_cell: int
    supernet_params: int  # all trainable weights of the supernet (w; partial channels)
    arch_params: int  # α + β

    def to_dict(self) -> dict:
        return {
            "space": self.space.to_dict(),
            "operators": self.operators,
            "edges_per_cell": self.edges_per_cell,
            "supernet_params": self.supernet_params,
            "arch_params": self.arch_params,
        }


def summarize_space(
    space: SearchSpace,
    in_channels: Sequence[int] = HMDB51_LAYER3_CHANNELS,
    n_classes: int = 51,
) -> SpaceSummary:
    """Exact counts, computed on the ``meta`` device so C=512 costs no memory."""
    with torch.device("meta"):
        operators = {name: conv_weight_count(create_op(name, space.channels)) for name in space.op_names}
        net = SearchNetwork(space, in_channels, n_classes)
    arch = sum(p.numel() for p in net.arch_parameters())
    return SpaceSummary(
        space=space,
        operators=operators,
        edges_per_cell=space.edges_per_cell,
        supernet_params=count_parameters(net) - arch,
        arch_params=arch,
    )
