"""Frozen pre-trained 3D CNN backbones: one per modality stream (thesis §4.1.2, docs/design.md §2).

    model = create_backbone("r2plus1d_50", in_channels=3)
    load_backbone_checkpoint(model, "r2p1d50_K_200ep.pth")
    backbone = FrozenBackbone(model, taps=("layer3", "layer4"))
    features = backbone(normalize_clip(clip, "kinetics"))  # clip [B, 3, 64, 112, 112] in [0, 1]
    features["layer3"].shape  # [B, 1024, 8, 7, 7]

The three architectures (``BACKBONES``) have the parameter names and shapes of the public
Kinetics checkpoints (kenshohara/3D-ResNets-PyTorch ``models/resnet.py`` and
``models/resnet2p1d.py``; for ResNeXt the CVPR 2018 layout, see :mod:`.resnet`).
:func:`backbone_output_shapes` gives the stage shapes without computing anything.
"""

from adf_service.extract.backbones.frozen import FrozenBackbone
from adf_service.extract.backbones.load import load_backbone_checkpoint
from adf_service.extract.backbones.normalize import (
    INPUT_NORMALIZATION,
    THESIS_BACKBONES,
    ThesisBackbone,
    normalize_clip,
)
from adf_service.extract.backbones.registry import BACKBONES, backbone_output_shapes, create_backbone
from adf_service.extract.backbones.trunk import STAGES, BackboneError, ResNet3d

__all__ = [
    "BACKBONES",
    "INPUT_NORMALIZATION",
    "STAGES",
    "THESIS_BACKBONES",
    "BackboneError",
    "FrozenBackbone",
    "ResNet3d",
    "ThesisBackbone",
    "backbone_output_shapes",
    "create_backbone",
    "load_backbone_checkpoint",
    "normalize_clip",
]
