"""The trunk the three backbones share: stem → max-pool → ``layer1`` … ``layer4``.

Module and parameter names are those of Hara et al.'s 3D-ResNets-PyTorch (``conv1``,
``bn1``, ``layer3.5.conv2.weight``, ``layer2.0.downsample.0.weight`` …), so that its
Kinetics checkpoints load key for key. Every backbone here uses shortcut type B (a strided
1×1×1 conv + BN where a block changes shape, identity elsewhere); shortcut A (zero-padded
identity, used only by the 2018 ResNet-18/34 checkpoints) has no parameters and is not
built. There is no ``avgpool``/``fc`` head: the features are taken from the stages, and
:func:`~adf_service.extract.backbones.load_backbone_checkpoint` drops a file's ``fc.*``.

Strides, for a clip ``[B, C_in, T, H, W]``: the stem keeps ``T`` and halves ``H, W``
(stride (1, 2, 2)), the max-pool halves all three, ``layer2``–``layer4`` halve all three
again, so ``layer3`` is at ``T/8 × H/16 × W/16`` and ``layer4`` at ``T/16 × H/32 × W/32``
(rounded up: a 64×112×112 clip gives 8×7×7 and 4×4×4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from torch import Tensor, nn

__all__ = ["STAGES", "STEM_CHANNELS", "BackboneError", "Block", "ResNet3d", "check_taps", "conv3d"]

STAGES = ("layer1", "layer2", "layer3", "layer4")
STEM_CHANNELS = 64  # conv1's output channels in every checkpoint used here (old ResNeXt included)


class BackboneError(ValueError):
    """A backbone name, tap, input or checkpoint that cannot be used; the message names it."""


class Block(Protocol):
    """A residual block class: ``Block(c_in, planes, stride, downsample)``, output ``planes·expansion``."""

    expansion: int

    def __call__(self, c_in: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> nn.Module: ...


def conv3d(c_in: int, c_out: int, kernel: int | tuple[int, int, int], stride: int | tuple[int, int, int] = 1,
           padding: int | tuple[int, int, int] = 0, groups: int = 1) -> nn.Conv3d:
    """A bias-free Conv3d (every conv of these nets is followed by BN)."""
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False)


def check_taps(taps: Sequence[str]) -> tuple[str, ...]:
    """``taps`` as a tuple, or :class:`BackboneError` naming what is not a stage."""
    taps = tuple(taps)
    unknown = [t for t in taps if t not in STAGES]
    if not taps or unknown:
        raise BackboneError(f"taps {list(taps)!r}: each tap must be one of {list(STAGES)}"
                            + (f"; unknown: {unknown}" if unknown else "; none given"))
    return taps


class ResNet3d(nn.Module):
    """A 3D ResNet trunk without its classifier head.

    Args:
        block: the residual block class of every stage.
        depths: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        widths: ``planes`` per stage; stage ``i`` outputs ``widths[i] · block.expansion``.
        in_channels: channels of the input clip (3 for RGB and pose, 2 for flow).
        arch: the registry name, for messages.

    Subclasses with another stem override :meth:`build_stem` and :meth:`stem`.
    """

    def __init__(self, block: Block, depths: Sequence[int], widths: Sequence[int],
                 in_channels: int = 3, arch: str = "") -> None:
        super().__init__()
        self.in_channels = in_channels
        self.arch = arch
        self.build_stem(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        c_in = STEM_CHANNELS
        for i, (name, depth, planes) in enumerate(zip(STAGES, depths, widths, strict=True)):
            self.add_module(name, _stage(block, c_in, planes, depth, stride=1 if i == 0 else 2))
            c_in = planes * block.expansion
        # The repo's init, so that a model without a checkpoint (tests, shape probes) has
        # activations of sane scale through 100 layers; a loaded checkpoint overwrites it.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def build_stem(self, in_channels: int) -> None:
        """``conv1`` 7×7×7, stride (1, 2, 2), to 64 channels, then ``bn1``."""
        self.conv1 = conv3d(in_channels, STEM_CHANNELS, 7, stride=(1, 2, 2), padding=3)
        self.bn1 = nn.BatchNorm3d(STEM_CHANNELS)

    def stem(self, x: Tensor) -> Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x: Tensor, taps: Sequence[str] = ("layer3", "layer4")) -> dict[str, Tensor]:
        """Stage outputs of clip ``x`` ``[B, C_in, T, H, W]``, by tap name, in stage order.

        Runs no further than the deepest tap.
        """
        taps = check_taps(taps)
        if x.dim() != 5 or x.shape[1] != self.in_channels or not x.is_floating_point():
            raise BackboneError(f"a clip must be float [B, C_in={self.in_channels}, T, H, W]; "
                                f"got {x.dtype} of shape {list(x.shape)}")
        deepest = max(STAGES.index(t) for t in taps)
        x = self.maxpool(self.stem(x))
        out: dict[str, Tensor] = {}
        for name in STAGES[: deepest + 1]:
            x = getattr(self, name)(x)
            if name in taps:
                out[name] = x
        return out


def _stage(block: Block, c_in: int, planes: int, depth: int, stride: int) -> nn.Sequential:
    c_out = planes * block.expansion
    downsample = None
    if stride != 1 or c_in != c_out:
        # Shortcut B; the keys `downsample.0` (conv) and `downsample.1` (BN) are the checkpoints'.
        downsample = nn.Sequential(conv3d(c_in, c_out, 1, stride=stride), nn.BatchNorm3d(c_out))
    blocks = [block(c_in, planes, stride, downsample)]
    blocks += [block(c_out, planes) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)
