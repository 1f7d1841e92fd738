"""3D ResNet-18 (pose stream) and 3D ResNeXt-101 32×4d (flow stream), fully 3D convolutions.

- ``resnet3d_18``: ``models/resnet.py`` of kenshohara/3D-ResNets-PyTorch (master), depth
  18, shortcut B, ``conv1_t_size`` 7, stride (1, 2, 2) — the layout of Kataoka et al.'s
  Kinetics-700 ``r3d18_K_200ep.pth`` (trained by that repo's ``main.py``, whose
  ``--resnet_shortcut`` defaults to B; the README's fine-tuning line gives no other).
- ``resnext3d_101``: the *old* ResNeXt layout of the CVPR 2018 branch of that repo
  (``models/resnext.py``, identical in kenshohara/video-classification-3d-cnn-pytorch and
  in craston/MARS, whose ``Flow_Kinetics_16f.pth`` is the thesis' flow backbone): a 64-channel
  7×7×7 ``conv1``, stages of ``planes`` 128/256/512/1024 with ``expansion`` 2, and
  ``cardinality · ⌊planes/32⌋`` grouped channels in the middle conv. The ResNeXt class on
  the repo's master (2020) is *not* this layout: it inherits a stem of 128 channels and
  passes ``n_classes`` where ``widen_factor`` goes, so its parameters fit none of the
  published ResNeXt checkpoints (docs/design.md §8).
"""

from __future__ import annotations

from torch import Tensor, nn

from adf_service.extract.backbones.trunk import ResNet3d, conv3d

__all__ = ["BasicBlock3d", "ResNeXtBottleneck3d", "resnet3d_18", "resnext3d_101"]


class BasicBlock3d(nn.Module):
    """Two 3×3×3 convs (the first one strided) and a residual: ``[B, c_in, …] → [B, planes, …]``."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3d(c_in, planes, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNeXtBottleneck3d(nn.Module):
    """1×1×1 → 3×3×3 in 32 groups (strided) → 1×1×1: ``[B, c_in, …] → [B, 2·planes, …]``."""

    expansion = 2
    cardinality = 32

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid = self.cardinality * (planes // 32)  # the old checkpoints' rule; = planes at cardinality 32
        self.conv1 = conv3d(c_in, mid, 1)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv3d(mid, mid, 3, stride=stride, padding=1, groups=self.cardinality)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv3d(mid, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def resnet3d_18(in_channels: int = 3) -> ResNet3d:
    """3D ResNet-18: layer3 256, layer4 512 channels."""
    return ResNet3d(BasicBlock3d, (2, 2, 2, 2), (64, 128, 256, 512), in_channels, arch="resnet3d_18")


def resnext3d_101(in_channels: int = 3) -> ResNet3d:
    """3D ResNeXt-101 (32×4d): layer3 1024, layer4 2048 channels."""
    return ResNet3d(ResNeXtBottleneck3d, (3, 4, 23, 3), (128, 256, 512, 1024), in_channels,
                    arch="resnext3d_101")
