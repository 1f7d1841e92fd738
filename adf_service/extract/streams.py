"""Modality streams: one clip view's input per modality, and its frozen backbone (thesis §4.1).

A :class:`Stream` turns a decoded clip and its sampled frame positions into the modality's
input — RGB frames, optical flow (:mod:`.flow`), pose renderings (:mod:`.pose`) — and runs
batches of those inputs through the modality's frozen backbone to the ``layer3`` and
``layer4`` features the store keeps.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adf_service.extract.backbones import (
    FrozenBackbone,
    backbone_output_shapes,
    create_backbone,
    load_backbone_checkpoint,
    normalize_clip,
)
from adf_service.extract.config import BackboneSpec, ExtractConfig, FlowSpec, PoseSpec
from adf_service.extract.flow import flow_at
from adf_service.extract.pose import PoseExtractor, pose_at
from adf_service.train.runtime import Runtime

__all__ = ["LAYERS", "Stream", "build_streams", "file_sha256"]

LAYERS = ("layer3", "layer4")  # layer3 feeds the fusion network, layer4 the baselines (docs/design.md §2)


@dataclass
class Stream:
    """One modality: how to make its input, and the frozen backbone that sees it.

    ``provenance`` says which backbone, checkpoint (name and sha256) and input it is.
    """

    modality: str
    spec: BackboneSpec
    backbone: FrozenBackbone
    runtime: Runtime
    pose: PoseExtractor | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def input_of(self, clip_id: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """One view's input ``[T, C, H, W]``: RGB uint8, flow float32 in [-1, 1], pose float32 in [0, 1].

        ``frames`` is the decoded clip ``[F, H, W, 3]`` uint8, ``indices`` the ``T`` sampled positions.
        """
        if isinstance(self.spec, FlowSpec):
            return flow_at(frames, indices, self.spec.flow_config())
        if isinstance(self.spec, PoseSpec):
            return pose_at(self.pose, clip_id, frames, indices)
        return frames[indices].transpose(0, 3, 1, 2)

    def output_shapes(self, frames: int, size: int) -> dict[str, tuple[int, int, int, int]]:
        """``{layer: (C, T, H, W)}`` of one view's features for ``frames``×``size``×``size`` inputs."""
        shapes = backbone_output_shapes(self.spec.arch, (frames, size, size), self.spec.in_channels)
        return {layer: shapes[layer] for layer in LAYERS}

    def features(self, inputs: list[np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
        """``{layer: float32 [len(inputs), C, T, H, W]}`` for the inputs of :meth:`input_of`.

        The forward always runs on exactly ``batch_size`` clips (the rest zeros): a clip's
        features then do not depend on how many clips share its batch, so an interrupted and
        resumed extraction writes the same bytes as one that ran through.
        """
        n = len(inputs)
        batch = np.stack(inputs)  # [n, T, C, H, W]
        if n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
        x = torch.from_numpy(batch).to(self.runtime.torch_device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.to(torch.float32).div_(255.0)
        x = normalize_clip(x.permute(0, 2, 1, 3, 4), self.spec.normalization)  # [B, C, T, H, W]
        memory_format = torch.channels_last_3d if self.runtime.use_channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=memory_format)
        with torch.inference_mode(), self.runtime.autocast():
            out = self.backbone(x)
        return {layer: out[layer][:n].float().cpu().numpy() for layer in LAYERS}


def build_streams(config: ExtractConfig, runtime: Runtime, seed: int) -> dict[str, Stream]:
    """The configured streams with their backbones loaded, frozen and on ``runtime``'s device.

    A ``random_init`` backbone draws its weights from a generator seeded by ``(seed, modality)``,
    so the same seed gives the same (meaningless) features.
    """
    streams = {}
    for modality, spec in config.streams().items():
        if spec.random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_random_init_seed(seed, modality))
                model = create_backbone(spec.arch, spec.in_channels)
        else:
            model = create_backbone(spec.arch, spec.in_channels)
            load_backbone_checkpoint(model, spec.checkpoint, adapt_input_channels=spec.adapt_input_channels)
        backbone = runtime.prepare_model(FrozenBackbone(model, LAYERS))
        pose = spec.create_extractor() if isinstance(spec, PoseSpec) else None
        streams[modality] = Stream(modality, spec, backbone, runtime, pose, _provenance(modality, spec, pose, seed))
    return streams


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _random_init_seed(seed: int, modality: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(modality.encode())) % 2**63


def _provenance(modality: str, spec: BackboneSpec, pose: PoseExtractor | None, seed: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "arch": spec.arch,
        "in_channels": spec.in_channels,
        "normalization": spec.normalization,
        "adapt_input_channels": spec.adapt_input_channels,
        "checkpoint": spec.checkpoint.name if spec.checkpoint else None,
        "checkpoint_sha256": file_sha256(spec.checkpoint) if spec.checkpoint else None,
        "random_init": spec.random_init,
    }
    if spec.random_init:
        record["random_init_seed"] = _random_init_seed(seed, modality)
    if isinstance(spec, FlowSpec):
        record.update(spec.flow_config().provenance())
    if pose is not None:
        record.update(pose.provenance())
    return record
