"""Genotypes: the discrete fusion cells that discretization derives from α and β.

A genotype is data. Per cell, per hidden node, the kept edges as ``(input index, op)``,
where input index 0..I−1 are the cell's input nodes (0 = previous cell, or the stem) and
I+k is hidden node k. It round-trips through JSON, validates what it loads, and renders as
text or as a Graphviz cell diagram (thesis fig. 9). Besides discretized and random ones,
control genotypes put one operator on every edge (``all_skip``, ``all_conv_1x1x1``, …).
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adf_service.space import (
    CELLS_RANGE,
    DISCRETIZATIONS,
    INPUTS_RANGE,
    N_NODES,
    OPERATOR_SETS,
    SearchSpace,
    node_edge_slices,
)

__all__ = [
    "FORMAT",
    "Genotype",
    "GenotypeError",
    "control_genotype",
    "control_names",
    "discretize",
    "random_genotype",
]

FORMAT = "adf-genotype/1"

Edge = tuple[int, str]
Node = tuple[Edge, ...]
Cell = tuple[Node, ...]


class GenotypeError(ValueError):
    """A genotype that does not describe a valid fusion network."""


@dataclass(frozen=True)
class Genotype:
    """Discrete fusion cells: ``cells[t][j]`` = the edges ``(input, op)`` of node j of cell t."""

    operators: str
    n_inputs: int
    cells: tuple[Cell, ...]
    # how it was made: all | topk | random-all | random-topk | control-all | control-topk
    discretization: str | None = None
    # what made it: seed, software versions, device, determinism flags (Runtime.provenance);
    # a record only: two genotypes with the same cells are equal whatever their provenance
    provenance: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def count(self, op: str) -> int:
        """How many kept edges carry ``op`` over every cell (``skip``: DARTS' skip collapse)."""
        return sum(1 for cell in self.cells for node in cell for _, name in node if name == op)

    def validate(self) -> None:
        """Raise :class:`GenotypeError` naming the first problem found."""
        if self.operators not in OPERATOR_SETS:
            raise GenotypeError(
                f"operators {self.operators!r} not in {{{', '.join(OPERATOR_SETS)}}}"
            )
        if self.n_inputs not in INPUTS_RANGE:
            raise GenotypeError(f"n_inputs {self.n_inputs!r} not in {set(INPUTS_RANGE)}")
        if len(self.cells) not in CELLS_RANGE:
            raise GenotypeError(
                f"{len(self.cells)} cells; a fusion network has {set(CELLS_RANGE)}"
            )
        allowed = set(OPERATOR_SETS[self.operators]) - {"zero"}
        for t, cell in enumerate(self.cells):
            if len(cell) != N_NODES:
                raise GenotypeError(
                    f"cell {t} has {len(cell)} nodes; every cell has {N_NODES}"
                )
            for j, node in enumerate(cell):
                at = f"cell {t} node {j}"
                if not node:
                    raise GenotypeError(f"{at} has no incoming edge")
                n_sources = self.n_inputs + j
                seen: set[int] = set()
                for source, op in node:
                    if not isinstance(source, int) or not 0 <= source < n_sources:
                        raise GenotypeError(
                            f"{at}: input index {source!r} out of range 0..{n_sources - 1} "
                            f"(inputs 0..{self.n_inputs - 1}, then earlier hidden nodes)"
                        )
                    if source in seen:
                        raise GenotypeError(f"{at}: input {source} appears twice")
                    seen.add(source)
                    if op not in allowed:
                        raise GenotypeError(
                            f"{at}: operator {op!r} not in {self.operators} "
                            f"({', '.join(sorted(allowed))})"
                        )

    def matches(self, space: SearchSpace) -> bool:
        return (self.operators, self.n_inputs, self.n_cells) == (
            space.operators,
            space.n_inputs,
            space.n_cells,
        )

    # --- JSON ---------------------------------------------------------------------------

    def with_provenance(self, provenance: dict[str, Any] | None) -> Genotype:
        return replace(self, provenance=provenance)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "operators": self.operators,
            "n_inputs": self.n_inputs,
            "discretization": self.discretization,
            "cells": [[[[s, op] for s, op in node] for node in cell] for cell in self.cells],
        }
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, where: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise GenotypeError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise GenotypeError(f"{where}: format {data.get('format')!r}, expected {FORMAT!r}")
        missing = {"operators", "n_inputs", "cells"} - set(data)
        if missing:
            raise GenotypeError(f"{where}: missing keys {sorted(missing)}")
        try:
            cells = tuple(
                tuple(tuple((edge[0], edge[1]) for edge in node) for node in cell)
                for cell in data["cells"]
            )
        except (TypeError, IndexError, KeyError) as exc:
            raise GenotypeError(
                f"{where}: 'cells' must be a list of cells, each a list of nodes, "
                f"each a list of [input index, operator] pairs ({exc})"
            ) from None
        try:
            provenance = data.get("provenance")
            if provenance is not None and not isinstance(provenance, dict):
                raise GenotypeError(f"'provenance' must be a JSON object, got {type(provenance).__name__}")
            return cls(data["operators"], data["n_inputs"], cells, data.get("discretization"), provenance)
        except GenotypeError as exc:
            raise GenotypeError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, where: str = "genotype") -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{where}: not valid JSON: {exc}") from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise GenotypeError(f"{path}: cannot read genotype: {exc.strerror}") from None
        return cls.from_json(text, where=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    # --- rendering ----------------------------------------------------------------------

    def input_name(self, cell: int, source: int) -> str:
        """What ``source`` of a node of ``cell`` is called: ``in{i} (stem)``, ``in{i} (cell k)``, ``node{j}``."""
        if source < self.n_inputs:
            earlier = cell - source  # input k=source+1 is cell t−k (1-based t = cell+1)
            return f"in{source} (cell {earlier - 1})" if earlier >= 1 else f"in{source} (stem)"
        return f"node{source - self.n_inputs}"

    def to_text(self) -> str:
        """Each cell as lines ``node j ← source: op, ...`` (what `genotype show` prints)."""
        how = f", {self.discretization}" if self.discretization else ""
        lines = [f"genotype: {self.operators}, I={self.n_inputs}, {self.n_cells} cells{how}"]
        for t, cell in enumerate(self.cells):
            lines.append(f"cell {t}: output = concat(node0..node{N_NODES - 1})")
            for j, node in enumerate(cell):
                edges = ", ".join(f"{self.input_name(t, s)} → {op}" for s, op in node)
                lines.append(f"  node{j} = sum[{edges}]")
        return "\n".join(lines)

    def to_dot(self) -> str:
        """A Graphviz digraph of every cell (render with ``dot -Tpng``)."""
        out = ["digraph genotype {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        for t, cell in enumerate(self.cells):
            out.append(f"  subgraph cluster_{t} {{ label=\"cell {t}\";")
            for i in range(self.n_inputs):
                label = self.input_name(t, i)
                out.append(f'    c{t}_s{i} [label="{label}", style=filled, fillcolor=lightblue];')
            for j, node in enumerate(cell):
                out.append(f'    c{t}_s{self.n_inputs + j} [label="node{j}"];')
                for s, op in node:
                    out.append(f'    c{t}_s{s} -> c{t}_s{self.n_inputs + j} [label="{op}"];')
            out.append(f'    c{t}_out [label="concat", style=filled, fillcolor=palegreen];')
            for j in range(N_NODES):
                out.append(f"    c{t}_s{self.n_inputs + j} -> c{t}_out;")
            out.append("  }")
        out.append("}")
        return "\n".join(out)


def _strongest(op_probs: torch.Tensor, op_names: Sequence[str]) -> tuple[int, float]:
    """Index and probability of the strongest non-zero op of one edge."""
    masked = op_probs.clone()
    masked[[i for i, n in enumerate(op_names) if n == "zero"]] = -1.0
    best = int(torch.argmax(masked))
    return best, float(masked[best])


def discretize(
    op_weights: Sequence[torch.Tensor],
    edge_weights: Sequence[torch.Tensor],
    space: SearchSpace,
    method: str,
) -> Genotype:
    """Derive a genotype from α (``[M, n_ops]`` per cell) and β (``[M]`` per cell).

    Strength of op o on edge (i, j) = softmax(α_ij)_o · softmax(β_j)_i, ``zero`` never
    chosen (docs/design.md §4). ``all`` keeps every edge with its strongest op; ``topk`` keeps each
    node's I strongest edges (edge strength = its best op's strength).
    """
    if method not in DISCRETIZATIONS:
        raise GenotypeError(f"discretization {method!r} not in {set(DISCRETIZATIONS)}")
    if len(op_weights) != space.n_cells or len(edge_weights) != space.n_cells:
        raise GenotypeError(
            f"α/β for {len(op_weights)}/{len(edge_weights)} cells, space has {space.n_cells}"
        )
    names = space.op_names
    cells = []
    for alpha, beta in zip(op_weights, edge_weights):
        alpha, beta = alpha.detach().float().cpu(), beta.detach().float().cpu()
        nodes = []
        for edges in node_edge_slices(space.n_inputs):
            beta_j = F.softmax(beta[edges], dim=-1)
            scored = []  # (strength, source, op)
            for source, e in enumerate(range(edges.start, edges.stop)):
                best, prob = _strongest(F.softmax(alpha[e], dim=-1), names)
                scored.append((prob * float(beta_j[source]), source, names[best]))
            if method == "topk":
                scored = sorted(scored, key=lambda s: -s[0])[: space.n_inputs]
            nodes.append(tuple((source, op) for _, source, op in sorted(scored, key=lambda s: s[1])))
        cells.append(tuple(nodes))
    return Genotype(space.operators, space.n_inputs, tuple(cells), discretization=method)


def random_genotype(space: SearchSpace, method: str, rng: random.Random) -> Genotype:
    """A genotype sampled uniformly: ops (never ``zero``) and, for ``topk``, the kept edges."""
    if method not in DISCRETIZATIONS:
        raise GenotypeError(f"discretization {method!r} not in {set(DISCRETIZATIONS)}")
    ops = [n for n in space.op_names if n != "zero"]
    cells = []
    for _ in range(space.n_cells):
        nodes = []
        for j in range(N_NODES):
            sources = list(range(space.n_inputs + j))
            if method == "topk":
                sources = sorted(rng.sample(sources, space.n_inputs))
            nodes.append(tuple((s, rng.choice(ops)) for s in sources))
        cells.append(tuple(nodes))
    return Genotype(space.operators, space.n_inputs, tuple(cells), discretization=f"random-{method}")


# --- controls -------------------------------------------------------------------------------
# Fixed genotypes that put one operator on every kept edge: they answer "does operator choice
# matter on this data at all?" (issue 12). all_skip and all_conv_1x1x1 come first: they leave
# only the cell's plumbing (input nodes ReLU → 1×1×1 → BN, sums, concat), nothing that looks at
# neighbouring positions; then one control per other operator of the set, in table order.


def control_names(space: SearchSpace) -> tuple[str, ...]:
    """The control genotypes of a setting: ``all_<op>`` for every op of its set but ``zero``.

    A control exists only for an operator of the setting's set (a genotype may hold no
    other); both thesis sets (tables 1 and 2) hold ``skip`` and ``conv_1x1x1``, so
    ``all_skip`` and ``all_conv_1x1x1`` exist in every setting. Order: those two, then the
    rest in the set's order, e.g. S2: all_skip, all_conv_1x1x1, all_sep_conv_3x3x3,
    all_conv_2plus1d_3x3x3_narrow, all_flat_conv_3x3x3.
    """
    ops = [op for op in space.op_names if op != "zero"]
    first = [op for op in ("skip", "conv_1x1x1") if op in ops]
    return tuple(f"all_{op}" for op in first + [op for op in ops if op not in first])


def _control_sources(n_inputs: int, node: int, method: str) -> tuple[int, ...]:
    """The inputs of hidden node ``node`` that a control keeps, in index order.

    ``all``: every predecessor, as in :func:`discretize`. ``topk``: the node's I nearest
    predecessors: the latest hidden nodes first, then the cell's inputs from the previous
    cell backwards. With I = 1 the cell is the chain input → node0 → … → node3; in general
    node0 reads every input, node j ≥ 1 reads node j−1, and the longest path through the
    cell (its reach for a 3×3×3 op) is as long as in the ``all`` cell, so a ``topk`` control
    differs from its ``all`` twin in width, not in depth.
    """
    if method not in DISCRETIZATIONS:
        raise GenotypeError(f"discretization {method!r} not in {set(DISCRETIZATIONS)}")
    if method == "all":
        return tuple(range(n_inputs + node))
    nearest = [n_inputs + k for k in reversed(range(node))] + list(range(n_inputs))
    return tuple(sorted(nearest[:n_inputs]))


def control_genotype(space: SearchSpace, method: str, name: str) -> Genotype:
    """The control genotype ``name`` (one of :func:`control_names`) for a setting.

    Every kept edge (:func:`_control_sources`) carries the one operator the name gives;
    every cell is the same. ``discretization`` records ``control-all`` or ``control-topk``.
    """
    names = control_names(space)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise GenotypeError(
            f"control genotype {name!r} not among the controls of operator set {space.operators} "
            f"({', '.join(names)}){hint}"
        )
    op = name.removeprefix("all_")
    cell = tuple(
        tuple((s, op) for s in _control_sources(space.n_inputs, j, method)) for j in range(N_NODES)
    )
    return Genotype(
        space.operators, space.n_inputs, (cell,) * space.n_cells, discretization=f"control-{method}"
    )
