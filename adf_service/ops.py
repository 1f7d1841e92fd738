"""The candidate operators of thesis tables 1 and 2, and the registry that names them.

Every operator maps ``[B, C, T, H, W]`` to ``[B, C, T, H, W]`` (stride 1, padding keeps
T, H, W). All but ``skip`` and ``zero`` are ReLU → op → BN (thesis §4.2.4). During the
search BN has no affine parameters (``affine=False``, as in PC-DARTS); the discretized
network uses affine BN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "OPS",
    "UnknownOperatorError",
    "conv_weight_count",
    "create_op",
    "register_op",
    "r2plus1d_mid_channels",
]

OpFactory = Callable[[int, bool], nn.Module]

OPS: dict[str, OpFactory] = {}
"""Operator name → ``factory(channels, affine)``. Populated by :func:`register_op`."""


class UnknownOperatorError(ValueError):
    """An operator name that is not in the registry."""


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register ``factory(channels, affine) -> nn.Module`` under ``name``."""

    def decorate(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"operator {name!r} is registered twice")
        OPS[name] = factory
        return factory

    return decorate


def create_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    """Build operator ``name`` on ``channels`` channels."""
    try:
        factory = OPS[name]
    except KeyError:
        raise UnknownOperatorError(
            f"unknown operator {name!r}; known operators: {', '.join(sorted(OPS))}"
        ) from None
    return factory(channels, affine)


def conv_weight_count(module: nn.Module) -> int:
    """Number of convolution weights in ``module`` (what tables 1 and 2 count)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv3d))


def r2plus1d_mid_channels(channels: int) -> int:
    """R(2+1)D's rule: mid channels that give a (2+1)D block the params of a 3×3×3 conv.

    ``floor(t·d²·C_in·C_out / (d²·C_in + t·C_out))`` with t = d = 3 → 1152 at C = 512.
    """
    return (27 * channels * channels) // (9 * channels + 3 * channels)


def _conv(c_in: int, c_out: int, kernel, padding, dilation=1, groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(
        c_in, c_out, kernel, padding=padding, dilation=dilation, groups=groups, bias=False
    )


def _relu_conv_bn(*convs: nn.Module, channels: int, affine: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), *convs, nn.BatchNorm3d(channels, affine=affine))


class Zero(nn.Module):
    """No connection: the output is all zeros (never chosen by discretization)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


@register_op("conv_1x1x1")
def _conv_1x1x1(c: int, affine: bool) -> nn.Module:
    return _relu_conv_bn(_conv(c, c, 1, 0), channels=c, affine=affine)


@register_op("conv_3x3x3")
def _conv_3x3x3(c: int, affine: bool) -> nn.Module:
    return _relu_conv_bn(_conv(c, c, 3, 1), channels=c, affine=affine)


@register_op("dil_conv_3x3x3")
def _dil_conv_3x3x3(c: int, affine: bool) -> nn.Module:
    # A full (not depthwise) 3×3×3 conv with dilation 2: table 1 counts 7.08M at C=512.
    return _relu_conv_bn(_conv(c, c, 3, 2, dilation=2), channels=c, affine=affine)


@register_op("sep_conv_3x3x3")
def _sep_conv_3x3x3(c: int, affine: bool) -> nn.Module:
    # DARTS style: (depthwise 3×3×3 → pointwise 1×1×1 → BN) twice, ReLU before each.
    return nn.Sequential(
        _relu_conv_bn(_conv(c, c, 3, 1, groups=c), _conv(c, c, 1, 0), channels=c, affine=affine),
        _relu_conv_bn(_conv(c, c, 3, 1, groups=c), _conv(c, c, 1, 0), channels=c, affine=affine),
    )


def _conv_2plus1d(c: int, mid: int, affine: bool) -> nn.Module:
    # Spatial 1×3×3 to `mid` channels, BN + ReLU between as in R(2+1)D, temporal 3×1×1 back.
    return nn.Sequential(
        nn.ReLU(),
        _conv(c, mid, (1, 3, 3), (0, 1, 1)),
        nn.BatchNorm3d(mid, affine=affine),
        nn.ReLU(),
        _conv(mid, c, (3, 1, 1), (1, 0, 0)),
        nn.BatchNorm3d(c, affine=affine),
    )


@register_op("conv_2plus1d_3x3x3")
def _conv_2plus1d_s1(c: int, affine: bool) -> nn.Module:
    """S1's (2+1)D conv: mid channels by R(2+1)D's equal-parameter rule (1152 at C=512)."""
    return _conv_2plus1d(c, r2plus1d_mid_channels(c), affine)


@register_op("conv_2plus1d_3x3x3_narrow")
def _conv_2plus1d_s2(c: int, affine: bool) -> nn.Module:
    """S2's (2+1)D conv: mid channels = C (512 at C=512, 3.15M weights)."""
    return _conv_2plus1d(c, c, affine)


@register_op("flat_conv_3x3x3")
def _flat_conv_3x3x3(c: int, affine: bool) -> nn.Module:
    # Flattened conv (Jin et al. 2014): one 1-D conv per axis T, H, W.
    return _relu_conv_bn(
        _conv(c, c, (3, 1, 1), (1, 0, 0)),
        _conv(c, c, (1, 3, 1), (0, 1, 0)),
        _conv(c, c, (1, 1, 3), (0, 0, 1)),
        channels=c,
        affine=affine,
    )


@register_op("skip")
def _skip(c: int, affine: bool) -> nn.Module:
    return nn.Identity()


@register_op("zero")
def _zero(c: int, affine: bool) -> nn.Module:
    return Zero()
