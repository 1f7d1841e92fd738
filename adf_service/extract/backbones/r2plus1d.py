"""R(2+1)D-50 (RGB stream): every t×d×d conv factorized into 1×d×d (space) then t×1×1 (time).

Layout of ``models/resnet2p1d.py`` in kenshohara/3D-ResNets-PyTorch (master), the model of
Kataoka et al.'s Kinetics-700 ``r2p1d50_K_200ep.pth``: a ResNet-50 with bottleneck blocks
(``expansion`` 4) whose 3×3×3 conv is ``conv2_s`` (1×3×3, spatial stride) → ``bn2_s`` → ReLU
→ ``conv2_t`` (3×1×1, temporal stride) → ``bn2_t``, and whose stem is ``conv1_s`` (1×7×7,
stride (1, 2, 2)) → ``bn1_s`` → ReLU → ``conv1_t`` (7×1×1) → ``bn1_t``.

The mid channels follow Tran et al.'s rule — as many parameters as the full t×d×d conv —
``⌊t·d²·C_in·C_out / (d²·C_in + t·C_out)⌋``: 144/288/576/1152 in the four stages. In the
stem the checkpoints count 3 input channels whatever the input is (110 mid channels), so a
2-channel model keeps 110 and stays loadable.
"""

from __future__ import annotations

from torch import Tensor, nn

from adf_service.extract.backbones.trunk import STEM_CHANNELS, ResNet3d, conv3d
from adf_service.ops import r2plus1d_mid_channels

__all__ = ["Bottleneck2plus1d", "R2plus1d", "r2plus1d_50"]

# ⌊7·7²·3·64 / (7²·3 + 7·64)⌋ = 110: the rule with t = d = 7 and the checkpoints' 3 RGB channels.
STEM_MID_CHANNELS = (7 * 7 * 7 * 3 * STEM_CHANNELS) // (7 * 7 * 3 + 7 * STEM_CHANNELS)


class Bottleneck2plus1d(nn.Module):
    """1×1×1 → (2+1)D 3×3×3 (strided) → 1×1×1: ``[B, c_in, …] → [B, 4·planes, …]``."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid = r2plus1d_mid_channels(planes)
        self.conv1 = conv3d(c_in, planes, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2_s = conv3d(planes, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))
        self.bn2_s = nn.BatchNorm3d(mid)
        self.conv2_t = conv3d(mid, planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0))
        self.bn2_t = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.relu(self.bn2_t(self.conv2_t(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class R2plus1d(ResNet3d):
    """The trunk with a factorized stem (``conv1_s``/``bn1_s``/``conv1_t``/``bn1_t``)."""

    def build_stem(self, in_channels: int) -> None:
        self.conv1_s = conv3d(in_channels, STEM_MID_CHANNELS, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
        self.bn1_s = nn.BatchNorm3d(STEM_MID_CHANNELS)
        self.conv1_t = conv3d(STEM_MID_CHANNELS, STEM_CHANNELS, (7, 1, 1), padding=(3, 0, 0))
        self.bn1_t = nn.BatchNorm3d(STEM_CHANNELS)

    def stem(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1_s(self.conv1_s(x)))
        return self.relu(self.bn1_t(self.conv1_t(x)))


def r2plus1d_50(in_channels: int = 3) -> R2plus1d:
    """R(2+1)D-50: layer3 1024, layer4 2048 channels."""
    return R2plus1d(Bottleneck2plus1d, (3, 4, 6, 3), (64, 128, 256, 512), in_channels, arch="r2plus1d_50")
