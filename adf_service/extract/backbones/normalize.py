"""The input scaling each family of checkpoints was trained with, and the thesis' backbones.

A backbone only gives useful features for inputs scaled as in its training. Per convention,
``(mean, std)`` per channel, applied as ``(x − mean) / std`` to ``x`` in the range stated;
a 2-channel (flow) input uses the first two entries, as 3D-ResNets-PyTorch's ``main.py`` does:

- ``kinetics``: Kataoka et al. 2020 (3D-ResNets-PyTorch master, ``mean.py`` with
  ``--mean_dataset kinetics`` and ``--value_scale 1``, both defaults): frames in [0, 1].
  For ``r3d18_K_200ep.pth``, ``r2p1d50_K_200ep.pth`` and the other ``*_K_200ep`` files.
- ``hara2018``: the CVPR 2018 checkpoints (``resnext-101-kinetics.pth`` …) and MARS's RGB
  streams: ActivityNet mean subtracted from frames in [0, 255], no division; here written
  for frames in [0, 1] (mean / 255, std 1/255).
- ``mars_flow``: MARS's flow streams (craston/MARS, ``Flow_Kinetics_16f.pth``): TV-L1 flow
  clipped to ±20 px, stored as ``(f + 20)/40 · 255`` and centred by subtracting 127.5, i.e.
  ``f · 127.5/20``. Here written for flow in [−1, 1] = ``clip(f, ±20)/20`` (what
  :mod:`adf_service.extract.flow` gives with its default bound of 20 px). MARS computed
  flow on frames of 256 px short side and resized them without rescaling the vectors, so
  flow computed at 112 px is about 0.44× as large as what that network saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adf_service.extract.backbones.trunk import BackboneError

__all__ = ["INPUT_NORMALIZATION", "THESIS_BACKBONES", "ThesisBackbone", "normalize_clip"]

INPUT_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "kinetics": ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),
    "hara2018": ((114.7748 / 255, 107.7354 / 255, 99.4750 / 255), (1 / 255, 1 / 255, 1 / 255)),
    "mars_flow": ((0.0, 0.0), (1 / 127.5, 1 / 127.5)),
}


@dataclass(frozen=True)
class ThesisBackbone:
    """One stream's backbone as in the thesis (§4.1.2) and its author's experiment files."""

    arch: str
    in_channels: int
    checkpoint: str  # the file name the public release uses; users supply the file
    normalization: str  # key of INPUT_NORMALIZATION


# ahn1340/AutoDeepFuse, exp_settings/hmdb51/*.yaml: f_rgb_path, f_flow_path, f_pose_path.
THESIS_BACKBONES: dict[str, ThesisBackbone] = {
    "rgb": ThesisBackbone("r2plus1d_50", 3, "r2p1d50_K_200ep.pth", "kinetics"),
    "flow": ThesisBackbone("resnext3d_101", 2, "Flow_Kinetics_16f.pth", "mars_flow"),
    # No pose checkpoint exists: the thesis runs the RGB-trained weights on the pose renderings.
    "pose": ThesisBackbone("resnet3d_18", 3, "r3d18_K_200ep.pth", "kinetics"),
}


def normalize_clip(x: Tensor, convention: str = "kinetics") -> Tensor:
    """``(x − mean) / std`` per channel for clip ``x`` ``[..., C, T, H, W]`` (C = 2 or 3)."""
    if convention not in INPUT_NORMALIZATION:
        raise BackboneError(f"unknown input normalization {convention!r}; "
                            f"known: {sorted(INPUT_NORMALIZATION)}")
    mean, std = INPUT_NORMALIZATION[convention]
    if x.dim() < 4 or not 1 <= x.shape[-4] <= len(mean) or not x.is_floating_point():
        raise BackboneError(f"normalization {convention!r} takes float clips [..., C≤{len(mean)}, T, H, W]; "
                            f"got {x.dtype} of shape {list(x.shape)}")
    c = x.shape[-4]
    shape = (c, 1, 1, 1)
    mean_t = torch.tensor(mean[:c], dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.tensor(std[:c], dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t
