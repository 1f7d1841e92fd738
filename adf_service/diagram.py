"""Genotype cell diagrams (thesis fig. 9), drawn with matplotlib as SVG or PNG.

One panel per cell, read left to right: the cell's input nodes (light blue), its hidden nodes
``node0..node3`` in topological columns (a node sits one column right of its deepest source),
the ``concat`` output (light green). Every kept edge is an arrow labelled with its operator;
an edge that skips columns is curved so that it passes beside the nodes in between and its
label does not sit on another's.

Matplotlib rather than Graphviz: Graphviz's Python packages need the system ``dot`` binary or
a C compiler, which a fresh machine set up by ``make setup`` lacks; matplotlib installs as a
wheel. (``Genotype.to_dot()`` still gives the Graphviz source for those who have ``dot``.)

Every artist a reader would look for carries a ``gid``, the ``id`` of its group in the SVG:
nodes ``c{t}-in{i}``, ``c{t}-node{j}``, ``c{t}-concat`` (their text ``…-label``), edges
``c{t}-edge-{source}-{j}`` into hidden node j, the source named as above (``c0-edge-in1-2``,
``c1-edge-node0-3``; the operator's text ``…-label``), arrows into concat
``c{t}-out-node{j}``. Lengths below are inches: one data unit of a panel is one inch, so
labels keep their size whatever the genotype.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from adf_service.genotype import Genotype

__all__ = ["DIAGRAM_SUFFIXES", "cell_diagram", "check_diagram_path", "genotype_svg", "save_diagram"]

DIAGRAM_SUFFIXES = (".svg", ".png")

NODE_FONT = 8.0  # points
EDGE_FONT = 6.5
CHAR_WIDTH = 0.6 / 72  # inches per point of font size: DejaVu Sans' mean advance, rounded up
BOX_HEIGHT = 0.34
ROW_GAP = 0.85  # between the centres of nodes in one column
BEND = 0.42  # how far an edge bows out per column it skips
MARGIN = 0.25
PANEL_TITLE = 0.35  # room above a panel for "cell t"
HEADING = 0.45  # room above the panels for the genotype's description
CROWD_GAP = 0.3  # more room before a column per edge entering it beyond three
LABEL_AT = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82)  # where on its edge a label may sit
MAX_ROW_WIDTH = 16.0  # wider than this side by side, and the cells are stacked instead

FILL = {"input": "lightblue", "hidden": "white", "concat": "palegreen"}
EDGE_COLOUR = "0.2"
OUT_COLOUR = "0.55"  # the unlabelled arrows into concat recede behind the operator edges


Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Point = tuple[float, float]


@dataclass(frozen=True)
class _Node:
    name: str  # in0, node2, concat: the gid's tail
    label: str
    kind: str  # input, hidden, concat
    x: float
    y: float
    width: float

    def box(self, pad: float = 0.0) -> Box:
        return (self.x - self.width / 2 - pad, self.y - BOX_HEIGHT / 2 - pad,
                self.x + self.width / 2 + pad, self.y + BOX_HEIGHT / 2 + pad)


@dataclass(frozen=True)
class _Edge:
    name: str  # edge-in0-2 (into hidden node 2), out-node2 (into concat): the gid's tail
    source: _Node
    target: _Node
    op: str | None  # None: an arrow into concat
    rad: float  # matplotlib's arc3 curvature
    control: Point  # the quadratic Bézier's control point that arc3 draws
    label_at: Point | None = None

    def point(self, s: float) -> Point:
        """The curve at parameter ``s`` ∈ [0, 1], from the source's centre to the target's."""
        (ax, ay), (cx, cy), (bx, by) = (self.source.x, self.source.y), self.control, (self.target.x, self.target.y)
        return ((1 - s) ** 2 * ax + 2 * (1 - s) * s * cx + s**2 * bx,
                (1 - s) ** 2 * ay + 2 * (1 - s) * s * cy + s**2 * by)


@dataclass(frozen=True)
class _Panel:
    nodes: tuple[_Node, ...]
    edges: tuple[_Edge, ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]  # the title's room included

    @property
    def width(self) -> float:
        return self.xlim[1] - self.xlim[0]

    @property
    def height(self) -> float:
        return self.ylim[1] - self.ylim[0]


def _text_width(text: str, font: float) -> float:
    return len(text) * font * CHAR_WIDTH


def _label_box(op: str, at: Point) -> Box:
    w, h = _text_width(op, EDGE_FONT) + 0.1, EDGE_FONT / 72 + 0.08
    return (at[0] - w / 2, at[1] - h / 2, at[0] + w / 2, at[1] + h / 2)


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _inside(p: Point, box: Box) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _state_name(n_inputs: int, source: int) -> str:
    return f"in{source}" if source < n_inputs else f"node{source - n_inputs}"


def _route(name: str, source: _Node, target: _Node, op: str | None, span: int, parity: int,
           nodes: Sequence[_Node]) -> _Edge:
    """The least bent arc from ``source`` to ``target`` that passes beside every other node.

    Straight between neighbouring columns where nothing is in the way; an edge that skips
    columns bows out by at least BEND per skipped column, so that skip edges between the same
    columns do not coincide. It bows away from the panel's middle (up from an upper input,
    down from a lower one); one along the middle alternates with ``parity``.
    """
    dx, dy = target.x - source.x, target.y - source.y
    length = math.hypot(dx, dy)
    side = (source.y + target.y) / 2
    up = side > 1e-9 or (abs(side) <= 1e-9 and parity % 2 == 0)
    bulges = ([0.0] if span <= 1 else []) + [BEND * max(span - 1, 1) + 0.3 * k for k in range(8)]
    others = [n.box(pad=0.08) for n in nodes if n is not source and n is not target]
    first = None
    for bulge in bulges:
        for sign in ((-1, 1) if up else (1, -1)) if bulge else (1,):
            # arc3's control point is chord midpoint + rad·(dy, −dx); rad < 0 bows a rightward edge up
            rad = 2 * sign * bulge / length
            control = (source.x + dx / 2 + rad * dy, source.y + dy / 2 - rad * dx)
            edge = _Edge(name, source, target, op, rad, control)
            first = first or edge
            if not any(_inside(edge.point(k / 40), box) for k in range(1, 40) for box in others):
                return edge
    return first  # type: ignore[return-value]


def _place_labels(edges: list[_Edge], nodes: Sequence[_Node]) -> list[_Edge]:
    """Put each operator on its edge where it covers no node, no label placed before it and,
    as far as it can, no other edge (a label where edges cross could belong to either)."""
    boxes = [n.box(pad=0.03) for n in nodes]
    samples = {e.name: [e.point(k / 60) for k in range(61)] for e in edges}
    labels: list[Box] = []
    placed = []

    def cost(box: Box, edge: _Edge) -> float:
        crossed = sum(_inside(p, box) for name, points in samples.items() if name != edge.name for p in points)
        return (10 * sum(_overlap(box, b) for b in boxes) + sum(_overlap(box, b) for b in labels)
                + 0.002 * crossed)

    for edge in edges:
        if edge.op is None:
            placed.append(edge)
            continue
        best = min((_label_box(edge.op, edge.point(s)) for s in LABEL_AT), key=lambda box: cost(box, edge))
        labels.append(best)
        placed.append(replace(edge, label_at=((best[0] + best[2]) / 2, (best[1] + best[3]) / 2)))
    return placed


def _panel(genotype: Genotype, t: int, column_gap: float) -> _Panel:
    """Where every node and edge of cell ``t`` goes, in inches.

    Columns are ``column_gap`` apart, wider before a column that many edges enter, so that
    their labels find room beside each other.
    """
    n_inputs, cell = genotype.n_inputs, genotype.cells[t]
    column = [0] * n_inputs
    for node in cell:
        column.append(1 + max(column[source] for source, _ in node))
    out_column = max(column) + 1
    entering = [0] * (out_column + 1)
    for j, node in enumerate(cell):
        entering[column[n_inputs + j]] += len(node)
    x = [0.0]
    for c in range(1, out_column + 1):
        x.append(x[-1] + column_gap + CROWD_GAP * max(0, entering[c] - 3))
    rows: dict[int, list[int]] = {}
    for state, c in enumerate(column):
        rows.setdefault(c, []).append(state)
    states: list[_Node] = [None] * len(column)  # type: ignore[list-item]
    for c, members in rows.items():
        for row, state in enumerate(members):
            label = genotype.input_name(t, state)  # "in1 (cell 0)", "node2": as to_text() names them
            kind = "input" if state < n_inputs else "hidden"
            y = ((len(members) - 1) / 2 - row) * ROW_GAP
            width = _text_width(label, NODE_FONT) + 0.25
            states[state] = _Node(_state_name(n_inputs, state), label, kind, x[c], y, width)
    concat = _Node("concat", "concat", "concat", x[out_column], 0.0, 0.8)
    nodes = (*states, concat)

    edges = []
    for j, node in enumerate(cell):
        for source, op in node:
            name = f"edge-{_state_name(n_inputs, source)}-{j}"
            span = column[n_inputs + j] - column[source]
            edges.append(_route(name, states[source], states[n_inputs + j], op, span, source, nodes))
    for j in range(len(cell)):
        span = out_column - column[n_inputs + j]
        edges.append(_route(f"out-node{j}", states[n_inputs + j], concat, None, span, j, nodes))
    edges = _place_labels(edges, nodes)

    boxes = [n.box() for n in nodes] + [_label_box(e.op, e.label_at) for e in edges if e.op and e.label_at]
    curve = [e.point(k / 20) for e in edges for k in range(21)]
    xs = [b[0] for b in boxes] + [b[2] for b in boxes] + [p[0] for p in curve]
    ys = [b[1] for b in boxes] + [b[3] for b in boxes] + [p[1] for p in curve]
    xlim = (min(xs) - MARGIN, max(xs) + MARGIN)
    ylim = (min(ys) - MARGIN, max(ys) + MARGIN + PANEL_TITLE)
    return _Panel(nodes, tuple(edges), xlim, ylim)


def _draw_panel(ax: Axes, panel: _Panel, t: int) -> None:
    boxes = {}
    for node in panel.nodes:
        style = "round,pad=0,rounding_size=0.1" if node.kind == "hidden" else "square,pad=0"
        box = FancyBboxPatch(
            (node.x - node.width / 2, node.y - BOX_HEIGHT / 2), node.width, BOX_HEIGHT, boxstyle=style,
            facecolor=FILL[node.kind], edgecolor="0.15", linewidth=0.8, zorder=3, gid=f"c{t}-{node.name}",
        )
        ax.add_patch(box)
        boxes[node.name] = box
        ax.text(node.x, node.y, node.label, fontsize=NODE_FONT, ha="center", va="center", zorder=4,
                gid=f"c{t}-{node.name}-label")
    for edge in panel.edges:
        gid, colour = f"c{t}-{edge.name}", OUT_COLOUR if edge.op is None else EDGE_COLOUR
        ax.add_patch(FancyArrowPatch(
            (edge.source.x, edge.source.y), (edge.target.x, edge.target.y),
            patchA=boxes[edge.source.name], patchB=boxes[edge.target.name],
            connectionstyle=f"arc3,rad={edge.rad:.4f}", arrowstyle="-|>", mutation_scale=9,
            linewidth=0.8, color=colour, zorder=2, gid=gid,
        ))
        if edge.op is not None and edge.label_at is not None:
            ax.text(*edge.label_at, edge.op, fontsize=EDGE_FONT, ha="center", va="center", zorder=5,
                    bbox={"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none"},
                    gid=f"{gid}-label")
    ax.text(panel.xlim[0] + MARGIN, panel.ylim[1] - PANEL_TITLE / 2, f"cell {t}", fontsize=9,
            fontweight="bold", ha="left", va="center", gid=f"c{t}-title")


def cell_diagram(genotype: Genotype, *, title: str | None = None) -> Figure:
    """Every cell of ``genotype`` as a graph, one panel per cell (thesis fig. 9).

    Panels sit side by side, or stacked for 3–4 cells and for cells too wide to sit side by
    side. The figure's size follows the number of cells and columns, so that a label is
    always printed at 6.5–9 pt. The heading reads ``TITLE: S2, I=2, 2 cells, all``.
    """
    ops = {op for cell in genotype.cells for node in cell for _, op in node}
    column_gap = 0.9 + max(_text_width(op, EDGE_FONT) for op in ops) + 0.45
    panels = [_panel(genotype, t, column_gap) for t in range(genotype.n_cells)]
    side_by_side = len(panels) <= 2 and sum(p.width for p in panels) <= MAX_ROW_WIDTH
    if side_by_side:
        width, height = sum(p.width for p in panels), max(p.height for p in panels)
        slots = [(sum(p.width for p in panels[:t]), 0.0, p.width, height) for t, p in enumerate(panels)]
    else:
        width, height = max(p.width for p in panels), sum(p.height for p in panels)
        slots = [(0.0, sum(p.height for p in panels[t + 1:]), width, p.height) for t, p in enumerate(panels)]
    fig_width, fig_height = width, height + HEADING
    fig = Figure(figsize=(fig_width, fig_height))
    for t, (panel, (left, bottom, w, h)) in enumerate(zip(panels, slots)):
        ax = fig.add_axes((left / fig_width, bottom / fig_height, w / fig_width, h / fig_height))
        ax.set_axis_off()
        # one data unit = one inch on both axes: a smaller panel gets the slack to its right / below
        ax.set_xlim(panel.xlim[0], panel.xlim[0] + w)
        ax.set_ylim(panel.ylim[1] - h, panel.ylim[1])
        _draw_panel(ax, panel, t)
    how = f", {genotype.discretization}" if genotype.discretization else ""
    cells = f"{genotype.n_cells} cell{'s' if genotype.n_cells > 1 else ''}"
    description = f"{genotype.operators}, I={genotype.n_inputs}, {cells}{how}"
    fig.text(MARGIN / fig_width, 1 - HEADING / 2 / fig_height, f"{title or 'genotype'}: {description}",
             fontsize=10, ha="left", va="center", gid="title")
    return fig


def _write(fig: Figure, target: io.StringIO | Path, fmt: str) -> None:
    # text stays text in the SVG (searchable, smaller); the salt and no date make it reproducible
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "adf-service"}):
        metadata = {"Date": None} if fmt == "svg" else {}
        fig.savefig(target, format=fmt, dpi=150, metadata=metadata)


def genotype_svg(genotype: Genotype, *, title: str | None = None) -> str:
    """The diagram as SVG text without the XML prolog, ready to inline in HTML."""
    buffer = io.StringIO()
    _write(cell_diagram(genotype, title=title), buffer, "svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def check_diagram_path(path: Path) -> Path:
    """``path`` if its suffix names a format :func:`save_diagram` writes, else a ValueError."""
    if path.suffix.lower() not in DIAGRAM_SUFFIXES:
        raise ValueError(
            f"{path}: cannot draw a diagram as {repr(path.suffix) if path.suffix else 'a file without a suffix'}; "
            f"use one of {', '.join(DIAGRAM_SUFFIXES)}"
        )
    return path


def save_diagram(genotype: Genotype, path: Path, *, title: str | None = None) -> Path:
    """Write the diagram to ``path`` as SVG or PNG, by its suffix; return ``path``."""
    path = check_diagram_path(Path(path))
    _write(cell_diagram(genotype, title=title), path, path.suffix.lower()[1:])
    return path
