"""Backbone names → constructors, and the feature shapes each one gives."""

from __future__ import annotations

from collections.abc import Callable

import torch

from adf_service.extract.backbones.r2plus1d import r2plus1d_50
from adf_service.extract.backbones.resnet import resnet3d_18, resnext3d_101
from adf_service.extract.backbones.trunk import STAGES, BackboneError, ResNet3d

__all__ = ["BACKBONES", "backbone_output_shapes", "create_backbone"]

BACKBONES: dict[str, Callable[..., ResNet3d]] = {
    "resnet3d_18": resnet3d_18,  # thesis §4.1.2: pose stream
    "resnext3d_101": resnext3d_101,  # flow stream
    "r2plus1d_50": r2plus1d_50,  # RGB stream
}


def create_backbone(arch: str, in_channels: int = 3) -> ResNet3d:
    """A randomly initialised backbone ``arch`` taking ``in_channels``-channel clips."""
    if arch not in BACKBONES:
        raise BackboneError(f"unknown backbone {arch!r}; known: {sorted(BACKBONES)}")
    if not (isinstance(in_channels, int) and in_channels >= 1):
        raise BackboneError(f"in_channels must be a positive int, got {in_channels!r}")
    return BACKBONES[arch](in_channels=in_channels)


def backbone_output_shapes(arch: str, clip: tuple[int, int, int] = (64, 112, 112),
                           in_channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
    """``[C, T, H, W]`` of every stage for a ``T×H×W`` clip, e.g. ``{"layer3": (1024, 8, 7, 7), …}``.

    Traced on the meta device: no weights or activations are allocated.
    """
    if len(clip) != 3 or not all(isinstance(n, int) and n >= 1 for n in clip):
        raise BackboneError(f"clip must be (T, H, W) of positive ints, got {clip!r}")
    with torch.device("meta"):
        model = create_backbone(arch, in_channels).eval()  # BN in training mode refuses 1×1×1 maps
        out = model(torch.empty(1, in_channels, *clip), taps=STAGES)
    return {name: tuple(t.shape[1:]) for name, t in out.items()}
