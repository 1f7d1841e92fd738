"""FrozenBackbone: a pre-trained backbone used as a fixed feature extractor (thesis §4.1.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adf_service.extract.backbones.trunk import ResNet3d, check_taps

__all__ = ["FrozenBackbone"]


class FrozenBackbone(nn.Module):
    """``model`` in eval mode for good, without gradients, returning the ``taps`` stage outputs.

    BatchNorm always uses the checkpoint's running statistics (``train()`` is a no-op), no
    parameter requires a gradient, and the forward runs under ``torch.no_grad`` and stops
    after the deepest tap (the classifier head is never built).
    """

    def __init__(self, model: ResNet3d, taps: Sequence[str] = ("layer3", "layer4")) -> None:
        super().__init__()
        self.taps = check_taps(taps)
        self.model = model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Clip ``[B, C_in, T, H, W]`` float → ``{tap: features}``.

        ``layer3`` is ``[B, C3, ⌈T/8⌉, ⌈H/16⌉, ⌈W/16⌉]``, ``layer4`` ``[B, C4, ⌈T/16⌉, ⌈H/32⌉, ⌈W/32⌉]``.
        """
        if self.model.training:  # someone called .train() on the inner model directly
            self.model.eval()
        return self.model(x, self.taps)
