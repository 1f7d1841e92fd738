"""Networks trained from scratch: the discrete fusion network and the late-fusion baseline.

``FusionNetwork`` is built from a :class:`Genotype`: the same stem and number of cells as
the supernet (no depth gap), every kept edge a full-channel op with affine BN, each hidden
node the sum of its kept edges, the cell output the concat of its 4 hidden nodes
(thesis §3.1.2, §4.1.3). ``BaselineNetwork`` is thesis §5.2.3: per modality layer4
features → global average pool → concat → linear.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from adf_service.genotype import Genotype
from adf_service.ops import create_op
from adf_service.space import N_NODES
from adf_service.supernet import Stem, cell_input_sources, input_node

__all__ = [
    "WEIGHTS_FORMAT", "BaselineNetwork", "FusionCell", "FusionNetwork", "FusionWeightsError", "count_parameters",
    "fusion_weights", "load_fusion",
]


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class FusionCell(nn.Module):
    """A discrete cell: each hidden node sums ``op(state)`` over its kept edges."""

    def __init__(self, cell: Sequence[Sequence[tuple[int, str]]], in_channels: Sequence[int], channels: int):
        super().__init__()
        self.n_inputs = len(in_channels)
        self.inputs = nn.ModuleList(input_node(c, channels, affine=True) for c in in_channels)
        self.sources = [[source for source, _ in node] for node in cell]
        self.nodes = nn.ModuleList(
            nn.ModuleList(create_op(op, channels, affine=True) for _, op in node) for node in cell
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        states = [node(x) for node, x in zip(self.inputs, inputs)]
        for sources, ops in zip(self.sources, self.nodes):
            states.append(sum(op(states[s]) for s, op in zip(sources, ops)))
        return torch.cat(states[self.n_inputs :], dim=1)


class FusionNetwork(nn.Module):
    """The fusion network a genotype describes, on full channels."""

    def __init__(
        self, genotype: Genotype, in_channels: Sequence[int], n_classes: int, channels: int
    ):
        super().__init__()
        self.genotype = genotype
        self.stem = Stem(in_channels, channels)
        widths = [channels]
        cells = []
        for t, cell in enumerate(genotype.cells):
            sources = cell_input_sources(t, genotype.n_inputs)
            cells.append(FusionCell(cell, [widths[s] for s in sources], channels))
            widths.append(N_NODES * channels)
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(widths[-1], n_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """One [B, C_m, T, H, W] per modality → logits [B, n_classes]."""
        states = [self.stem(features)]
        for t, cell in enumerate(self.cells):
            states.append(cell([states[s] for s in cell_input_sources(t, self.genotype.n_inputs)]))
        return self.classifier(states[-1].mean(dim=(2, 3, 4)))


class BaselineNetwork(nn.Module):
    """Late fusion: global average pool per modality, concat, one linear layer."""

    def __init__(self, in_channels: Sequence[int], n_classes: int):
        super().__init__()
        self.classifier = nn.Linear(sum(in_channels), n_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """One [B, C_m, T_m, H_m, W_m] per modality (shapes may differ) → [B, n_classes]."""
        pooled = [x.mean(dim=(2, 3, 4)) for x in features]
        return self.classifier(torch.cat(pooled, dim=1))


# --- trained weights as a file --------------------------------------------------------------------

WEIGHTS_FORMAT = "adf-fusion-weights/1"


class FusionWeightsError(ValueError):
    """A weights file that cannot be read, is not one, or does not fit its own genotype."""


def fusion_weights(
    genotype: Genotype, in_channels: Sequence[int], n_classes: int, channels: int,
    state_dict: dict[str, torch.Tensor], **info: object,
) -> dict[str, object]:
    """What a weights file holds: enough to rebuild the network (its genotype, input channels per
    modality, classes, channels C_f) and its trained ``state_dict``; ``info`` is kept as it is
    (e.g. modalities, test top-1, the trial it came from)."""
    return {"format": WEIGHTS_FORMAT, "genotype": genotype.to_dict(), "in_channels": list(in_channels),
            "n_classes": int(n_classes), "channels": int(channels), "state_dict": state_dict, "info": dict(info)}


def load_fusion(path: str | Path) -> FusionNetwork:
    """The trained fusion network of a weights file (``adf-service best --export``), in eval mode:
    ``load_fusion("best/model.pt")(features)`` gives logits for one ``[B, C_m, T, H, W]`` per modality."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise FusionWeightsError(f"{path}: cannot read fusion weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
        raise FusionWeightsError(f"{path}: not a fusion weights file (format {WEIGHTS_FORMAT!r} expected)")
    genotype = Genotype.from_dict(data["genotype"], where=f"{path}: genotype")
    network = FusionNetwork(genotype, data["in_channels"], data["n_classes"], data["channels"])
    try:
        network.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise FusionWeightsError(f"{path}: the weights do not fit the file's own genotype ({exc})") from None
    return network.eval()
