"""Genotype diagrams (thesis fig. 9): every node, edge and operator of the genotype is in the SVG."""

import random
import re
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
from typer.testing import CliRunner

from adf_service.diagram import cell_diagram, genotype_svg, save_diagram
from adf_service.genotype import Genotype, random_genotype
from adf_service.space import N_NODES, OPERATOR_SETS, SearchSpace
from api.cli import app

SVG = "{http://www.w3.org/2000/svg}"

# 2 cells, I=2, built by hand: a skip edge from in0 to node3, one from node0 to node2.
HAND = Genotype(
    "S2",
    2,
    (
        (
            ((0, "sep_conv_3x3x3"), (1, "skip")),
            ((0, "conv_1x1x1"), (2, "flat_conv_3x3x3")),
            ((2, "skip"), (3, "conv_2plus1d_3x3x3_narrow")),
            ((0, "skip"), (4, "sep_conv_3x3x3")),
        ),
        (
            ((1, "conv_1x1x1"),),
            ((0, "flat_conv_3x3x3"), (2, "skip")),
            ((1, "sep_conv_3x3x3"), (3, "skip")),
            ((3, "conv_1x1x1"), (4, "conv_1x1x1")),
        ),
    ),
    discretization="all",
)

GENOTYPES = {
    "hand": HAND,
    **{
        f"random-{ops}": random_genotype(SearchSpace(ops, 3, 2, 8, 4), "topk", random.Random(i))
        for i, ops in enumerate(OPERATOR_SETS)
    },
}


def groups(svg: str) -> dict[str, ET.Element]:
    """Every element of the SVG that has an id, by id."""
    return {el.get("id"): el for el in ET.fromstring(svg).iter() if el.get("id")}


def name(g: Genotype, source: int) -> str:
    return f"in{source}" if source < g.n_inputs else f"node{source - g.n_inputs}"


def texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()).strip() for t in element.iter(f"{SVG}text")]


@pytest.fixture(scope="module", params=sorted(GENOTYPES))
def drawn(request):
    g = GENOTYPES[request.param]
    return g, groups(genotype_svg(g))


def test_every_cell_has_its_inputs_hidden_nodes_and_concat_and_nothing_else(drawn):
    g, by_id = drawn
    node = re.compile(r"c(\d+)-(in\d+|node\d+|concat)")
    nodes = {i for i in by_id if node.fullmatch(i)}
    assert len(nodes) == g.n_cells * (g.n_inputs + N_NODES + 1)
    for t in range(g.n_cells):
        expected = {f"c{t}-in{i}" for i in range(g.n_inputs)} | {f"c{t}-node{j}" for j in range(N_NODES)}
        assert expected | {f"c{t}-concat"} <= nodes
        assert texts(by_id[f"c{t}-in0-label"]) == [g.input_name(t, 0)]


def test_one_edge_per_kept_edge_and_four_arrows_into_concat_per_cell(drawn):
    g, by_id = drawn
    edges = {i for i in by_id if re.fullmatch(r"c\d+-edge-(in|node)\d+-\d+", i)}
    expected = {
        f"c{t}-edge-{name(g, source)}-{j}"
        for t, cell in enumerate(g.cells) for j, node in enumerate(cell) for source, _ in node
    }
    assert edges == expected
    assert len(edges) == sum(len(node) for cell in g.cells for node in cell)
    for t in range(g.n_cells):
        assert {i for i in by_id if i.startswith(f"c{t}-out-")} == {f"c{t}-out-node{j}" for j in range(N_NODES)}
        for j in range(N_NODES):
            assert by_id[f"c{t}-out-node{j}"].find(f"{SVG}path") is not None  # an arrow is drawn


def test_each_operator_label_appears_as_often_as_the_cell_uses_it(drawn):
    g, by_id = drawn
    for t, cell in enumerate(g.cells):
        uses = Counter(op for node in cell for _, op in node)
        labels = Counter(
            text for i, el in by_id.items() if re.fullmatch(rf"c{t}-edge-.*-label", i) for text in texts(el)
        )
        assert labels == uses
        for j, node in enumerate(cell):
            for source, op in node:  # and each label is its own edge's operator
                assert texts(by_id[f"c{t}-edge-{name(g, source)}-{j}-label"]) == [op]


def test_title_names_operators_inputs_cells_and_discretization():
    assert texts(groups(genotype_svg(HAND, title="best"))["title"]) == ["best: S2, I=2, 2 cells, all"]


def test_svg_is_inlinable_text_and_the_same_on_every_call():
    svg = genotype_svg(HAND)
    assert svg.startswith("<svg") and "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert ">sep_conv_3x3x3</text>" in svg  # labels stay text, not glyph paths
    assert genotype_svg(HAND) == svg


def test_figure_grows_with_cells_and_columns_so_labels_keep_their_size():
    one_cell = Genotype("S2", 2, HAND.cells[:1], "all")
    chain = Genotype("S2", 1, ((((0, "skip"),), ((1, "skip"),), ((2, "skip"),), ((3, "skip"),)),))
    flat = Genotype("S2", 1, ((((0, "skip"),), ((0, "skip"),), ((0, "skip"),), ((0, "skip"),)),))
    w1, h1 = cell_diagram(one_cell).get_size_inches()
    w2, h2 = cell_diagram(HAND).get_size_inches()
    assert w2 > 1.5 * w1 or h2 > 1.5 * h1
    assert cell_diagram(chain).get_size_inches()[0] > 1.5 * cell_diagram(flat).get_size_inches()[0]


def test_save_writes_svg_or_png_by_suffix_and_refuses_others(tmp_path):
    assert ET.parse(save_diagram(HAND, tmp_path / "g.svg")).getroot().tag == f"{SVG}svg"
    assert save_diagram(HAND, tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"'\.pdf'.*\.svg, \.png"):
        save_diagram(HAND, tmp_path / "g.pdf")


def test_cli_genotype_show_svg_prints_the_text_and_writes_a_parsable_diagram(tmp_path):
    HAND.save(tmp_path / "g.json")
    out = tmp_path / "cells.svg"
    result = CliRunner().invoke(app, ["genotype", "show", str(tmp_path / "g.json"), "--svg", str(out)])
    assert result.exit_code == 0, result.output
    assert "cell 1:" in result.stdout and f"diagram written to {out}" in result.stdout
    by_id = groups(out.read_text())
    assert {"c0-concat", "c1-concat", "c1-edge-node0-1"} <= set(by_id)


def test_cli_genotype_show_refuses_a_diagram_suffix_it_cannot_write(tmp_path):
    HAND.save(tmp_path / "g.json")
    result = CliRunner().invoke(
        app, ["genotype", "show", str(tmp_path / "g.json"), "--svg", str(tmp_path / "cells.jpg")]
    )
    assert result.exit_code == 2
    assert "'.jpg'" in result.output and ".svg, .png" in result.output
    assert not (tmp_path / "cells.jpg").exists()
