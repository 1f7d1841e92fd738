"""The PC-DARTS search network over fused modality features (docs/design.md §2, thesis §3.2, §4.1.3).

``SearchNetwork``: stem (concat → 1×1×1 conv → BN → C) → ``n_cells`` ``SearchCell``s →
global average pool → linear. Each cell edge is a ``MixedOp`` on partial channels; hidden
node j sums its edges weighted by softmax(β_j) (or by 1 each with ``edge_norm`` off: with
K = 1 that is DARTS). α (``op_weights``) and β (``edge_weights``) live in
``nn.ParameterList``s, one entry per cell, so ``.to()``, ``state_dict`` and DDP see them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adf_service.ops import create_op
from adf_service.space import N_NODES, SearchSpace, mixed_op_channels, node_edge_slices

__all__ = [
    "MixedOp",
    "SearchCell",
    "SearchNetwork",
    "Stem",
    "cell_input_sources",
    "channel_shuffle",
    "input_node",
]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C, T, H, W] → view [B, g, C/g, T, H, W], swap dims 1 and 2, flatten back."""
    if groups == 1:
        return x
    b, c, *rest = x.shape
    return x.view(b, groups, c // groups, *rest).transpose(1, 2).reshape(b, c, *rest)


def cell_input_sources(cell_index: int, n_inputs: int) -> list[int]:
    """Which earlier states feed cell ``cell_index`` (0-based): index into [stem, cell 0, ...].

    Input k (k = 1..I) of cell t (1-based) is the output of cell t−k, or the stem where
    t−k < 1 (docs/design.md §2). Returned as positions in the list ``[stem, cell_0, cell_1, ...]``.
    """
    t = cell_index + 1
    return [max(t - k, 0) for k in range(1, n_inputs + 1)]


def input_node(c_in: int, channels: int, affine: bool) -> nn.Sequential:
    """A cell's input node: ReLU → 1×1×1 conv → BN, mapping ``c_in`` to ``channels``."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv3d(c_in, channels, 1, bias=False),
        nn.BatchNorm3d(channels, affine=affine),
    )


class Stem(nn.Module):
    """Channel-wise concat of the modality features → 1×1×1 conv → BN to ``channels``."""

    def __init__(self, in_channels: Sequence[int], channels: int):
        super().__init__()
        self.conv = nn.Conv3d(sum(in_channels), channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: one [B, C_m, T, H, W] per modality → [B, channels, T, H, W]."""
        shapes = {tuple(x.shape[2:]) for x in features}
        if len(shapes) != 1:
            raise ValueError(
                f"modalities must share T, H, W to be fused; got {[tuple(x.shape[1:]) for x in features]}"
            )
        return self.bn(self.conv(torch.cat(list(features), dim=1)))


class MixedOp(nn.Module):
    """PC-DARTS mixed op: slice C/K channels → Σ_o w_o·o(x) → concat the rest → shuffle."""

    def __init__(self, channels: int, op_names: Sequence[str], partial_k: int):
        super().__init__()
        self.partial_k = partial_k
        self.op_names = tuple(op_names)
        self.ops = nn.ModuleList(
            create_op(name, mixed_op_channels(channels, partial_k), affine=False)
            for name in self.op_names
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` [B, C, T, H, W], ``weights`` softmax(α) [n_ops] → [B, C, T, H, W]."""
        c_part = x.shape[1] // self.partial_k
        x_part, x_rest = x[:, :c_part], x[:, c_part:]
        # `zero` contributes exactly nothing, to the output and to every gradient.
        mixed = sum(
            w * op(x_part)
            for name, w, op in zip(self.op_names, weights, self.ops)
            if name != "zero"
        )
        return channel_shuffle(torch.cat([mixed, x_rest], dim=1), self.partial_k)


class SearchCell(nn.Module):
    """I input nodes, 4 hidden nodes over all mixed edges; output = concat of hidden nodes."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        op_names: Sequence[str],
        partial_k: int,
    ):
        super().__init__()
        self.n_inputs = len(in_channels)
        self.inputs = nn.ModuleList(input_node(c, channels, affine=False) for c in in_channels)
        self.node_slices = node_edge_slices(self.n_inputs)
        self.edges = nn.ModuleList(
            MixedOp(channels, op_names, partial_k)
            for node in self.node_slices
            for _ in range(node.stop - node.start)
        )

    def forward(
        self,
        inputs: Sequence[torch.Tensor],
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor,
    ) -> torch.Tensor:
        """``op_weights`` [M, n_ops] (softmax per edge), ``edge_weights`` [M] (softmax per node, or 1s)."""
        states = [node(x) for node, x in zip(self.inputs, inputs)]
        for edges in self.node_slices:
            states.append(
                sum(
                    edge_weights[e] * self.edges[e](states[i], op_weights[e])
                    for i, e in enumerate(range(edges.start, edges.stop))
                )
            )
        return torch.cat(states[self.n_inputs :], dim=1)


class SearchNetwork(nn.Module):
    """The supernet searched by PC-DARTS over one :class:`SearchSpace` setting.

    ``edge_norm`` (default, PC-DARTS' edge normalisation): hidden node j = Σ_i softmax(β_j)_i
    · edge_ij. Off: node j = Σ_i edge_ij, every edge weighted 1; β then stays 0 and out of
    :meth:`arch_parameters`, so softmax(β) is uniform per node and discretization ranks a
    node's edges by softmax(α) alone. K = 1 with ``edge_norm`` off is DARTS.
    """

    def __init__(
        self, space: SearchSpace, in_channels: Sequence[int], n_classes: int, edge_norm: bool = True
    ):
        super().__init__()
        self.space, self.edge_norm = space, edge_norm
        c = space.channels
        self.stem = Stem(in_channels, c)
        widths = [c]  # output channels of [stem, cell 0, cell 1, ...]
        cells = []
        for t in range(space.n_cells):
            sources = cell_input_sources(t, space.n_inputs)
            cells.append(
                SearchCell([widths[s] for s in sources], c, space.op_names, space.partial_k)
            )
            widths.append(N_NODES * c)
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(widths[-1], n_classes)
        n_edges, n_ops = space.edges_per_cell, len(space.op_names)
        # α and β per cell (not shared across cells, unlike DARTS), 1e-3·randn (docs/design.md §2).
        self.op_weights = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(n_edges, n_ops)) for _ in range(space.n_cells)
        )
        self.edge_weights = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(n_edges)) if edge_norm
            else nn.Parameter(torch.zeros(n_edges), requires_grad=False)
            for _ in range(space.n_cells)
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        """α and β of every cell (α only with ``edge_norm`` off): optimised by Adam on the α half."""
        return [*self.op_weights, *(self.edge_weights if self.edge_norm else [])]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything but α and β: optimised by SGD on the weight half."""
        arch = {id(p) for p in [*self.op_weights, *self.edge_weights]}
        return [p for p in self.parameters() if id(p) not in arch]

    def op_probabilities(self, cell: int) -> torch.Tensor:
        """softmax(α) per edge of ``cell``: [M, n_ops]."""
        return F.softmax(self.op_weights[cell], dim=-1)

    def edge_probabilities(self, cell: int) -> torch.Tensor:
        """softmax(β) over each hidden node's incoming edges: [M]."""
        beta = self.edge_weights[cell]
        return torch.cat([F.softmax(beta[s], dim=-1) for s in node_edge_slices(self.space.n_inputs)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """One [B, C_m, T, H, W] per modality (same T, H, W) → logits [B, n_classes]."""
        states = [self.stem(features)]
        for t, cell in enumerate(self.cells):
            inputs = [states[s] for s in cell_input_sources(t, self.space.n_inputs)]
            edge_weights = (
                self.edge_probabilities(t) if self.edge_norm else torch.ones_like(self.edge_weights[t])
            )
            states.append(cell(inputs, self.op_probabilities(t), edge_weights))
        pooled = states[-1].mean(dim=(2, 3, 4))
        return self.classifier(pooled)
