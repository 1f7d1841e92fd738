"""Discretization (all, topk) on hand-made α/β, and the genotype as validated, readable data."""

import json
import random

import pytest
import torch

from adf_service.genotype import Genotype, GenotypeError, discretize, random_genotype
from adf_service.space import OPERATOR_SETS, SearchSpace, edges_per_cell, node_edge_slices

S2 = OPERATOR_SETS["S2"]  # conv_1x1x1, sep_conv, (2+1)D narrow, flat_conv, skip, zero
ZERO = S2.index("zero")


def flat_alpha_beta(space):
    m, n_ops = edges_per_cell(space.n_inputs), len(space.op_names)
    return (
        [torch.zeros(m, n_ops) for _ in range(space.n_cells)],
        [torch.zeros(m) for _ in range(space.n_cells)],
    )


def test_all_keeps_every_edge_with_its_strongest_op_and_never_zero():
    space = SearchSpace("S2", 2, 1, 8, 4)
    alpha, beta = flat_alpha_beta(space)
    alpha[0][:, ZERO] = 10.0  # zero dominates every edge ...
    alpha[0][:, S2.index("flat_conv_3x3x3")] = 5.0  # ... the best real op is flat conv
    alpha[0][3, S2.index("skip")] = 6.0  # edge 3 (node 1, input 1) prefers skip
    g = discretize(alpha, beta, space, "all")
    assert [len(node) for node in g.cells[0]] == [2, 3, 4, 5]
    ops = [op for node in g.cells[0] for _, op in node]
    assert "zero" not in ops
    assert g.cells[0][1] == ((0, "flat_conv_3x3x3"), (1, "skip"), (2, "flat_conv_3x3x3"))


@pytest.mark.parametrize("n_inputs", [1, 2, 3])
def test_topk_keeps_exactly_I_edges_per_node(n_inputs):
    space = SearchSpace("S2", n_inputs, 2, 8, 4)
    torch.manual_seed(n_inputs)
    alpha = [torch.randn(edges_per_cell(n_inputs), len(S2)) for _ in range(2)]
    beta = [torch.randn(edges_per_cell(n_inputs)) for _ in range(2)]
    g = discretize(alpha, beta, space, "topk")
    assert all(len(node) == n_inputs for cell in g.cells for node in cell)


def test_topk_ranks_edges_by_softmax_alpha_times_softmax_beta_not_raw_logits():
    space = SearchSpace("S2", 2, 1, 8, 4)
    alpha, beta = flat_alpha_beta(space)
    node3 = node_edge_slices(2)[3]  # 5 incoming edges: inputs 0, 1, nodes 0, 1, 2
    e = list(range(node3.start, node3.stop))
    alpha[0][e[0], :2] = 5.0  # raw max 5, but split between two ops: softmax ≈ 0.5
    alpha[0][e[2]] = torch.tensor([3.0, -9, -9, -9, -9, -9])  # raw max 3, softmax ≈ 1
    alpha[0][e[4]] = torch.tensor([-9, -9, 2.9, -9, -9, -9])  # softmax ≈ 1 too, β decides
    beta[0][e[4]] = 0.5
    g = discretize(alpha, beta, space, "topk")
    kept = dict(g.cells[0][3])
    assert set(kept) == {2 + 0, 2 + 2}  # node0 (via e[2]) and node2 (via e[4]); not input 0
    assert kept == {2: "conv_1x1x1", 4: "conv_2plus1d_3x3x3_narrow"}


def test_topk_never_keeps_an_edge_for_its_zero_op():
    space = SearchSpace("S2", 1, 1, 8, 4)
    alpha, beta = flat_alpha_beta(space)
    node1 = node_edge_slices(1)[1]  # inputs: input 0, node 0
    alpha[0][node1.start, ZERO] = 20.0  # only zero is strong here; its best real op is weak
    alpha[0][node1.start + 1, S2.index("skip")] = 1.0
    g = discretize(alpha, beta, space, "topk")
    assert g.cells[0][1] == ((1, "skip"),)


def test_discretize_refuses_a_cell_count_that_does_not_match():
    space = SearchSpace("S2", 2, 2, 8, 4)
    alpha, beta = flat_alpha_beta(SearchSpace("S2", 2, 1, 8, 4))
    with pytest.raises(GenotypeError, match="1/1 cells, space has 2"):
        discretize(alpha, beta, space, "all")


def example_genotype():
    return random_genotype(SearchSpace("S1", 3, 2, 8, 4), "topk", random.Random(3))


def test_genotype_round_trips_through_json(tmp_path):
    g = example_genotype()
    assert Genotype.from_json(g.to_json()) == g
    g.save(tmp_path / "g.json")
    assert Genotype.load(tmp_path / "g.json") == g
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["cells"][0][0][0][1] in OPERATOR_SETS["S1"]  # readable: [input, "op"] pairs


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["cells"][0][0].__setitem__(0, [0, "maxpool_3x3"]), "operator 'maxpool_3x3' not in S1"),
        (lambda d: d["cells"][0][0].__setitem__(0, [0, "zero"]), "operator 'zero' not in S1"),
        (lambda d: d["cells"][1][0].__setitem__(0, [7, "skip"]), r"cell 1 node 0: input index 7 out of range 0..2"),
        (lambda d: d["cells"].extend([d["cells"][0]] * 3), "5 cells"),
        (lambda d: d["cells"][0].pop(), "cell 0 has 3 nodes"),
        (lambda d: d.__setitem__("operators", "S9"), "operators 'S9'"),
        (lambda d: d.pop("cells"), r"missing keys \['cells'\]"),
        (lambda d: d.__setitem__("cells", 3), "'cells' must be a list"),
    ],
)
def test_loading_a_bad_genotype_names_the_problem_and_the_file(tmp_path, mutate, message):
    data = example_genotype().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=message) as info:
        Genotype.load(path)
    assert str(path) in str(info.value)


def test_genotype_that_is_not_json_is_a_clear_error(tmp_path):
    (tmp_path / "g.json").write_text("{cells: ")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load(tmp_path / "g.json")


@pytest.mark.parametrize("method", ["all", "topk"])
def test_random_genotype_is_uniform_over_real_ops_and_seeded(method):
    space = SearchSpace("S2", 3, 4, 8, 4)
    g = random_genotype(space, method, random.Random(0))
    assert g == random_genotype(space, method, random.Random(0))
    assert g != random_genotype(space, method, random.Random(1))
    counts = {}
    for cell in g.cells:
        for j, node in enumerate(cell):
            assert len(node) == (3 if method == "topk" else 3 + j)
            for _, op in node:
                counts[op] = counts.get(op, 0) + 1
    assert "zero" not in counts and len(counts) == len(S2) - 1


def test_text_and_dot_render_every_edge():
    g = example_genotype()
    text, dot = g.to_text(), g.to_dot()
    n_edges = sum(len(node) for cell in g.cells for node in cell)
    assert text.count("→") == n_edges
    assert dot.startswith("digraph") and dot.count('[label="') >= n_edges
    assert "in0 (stem)" in text and "in0 (cell 0)" in text


def test_provenance_round_trips_through_json_and_does_not_change_equality():
    genotype = Genotype("S1", 1, (((( 0, "skip"),),) * 4,), "topk")
    marked = genotype.with_provenance({"seed": 7, "software": {"torch": "x"}})
    again = Genotype.from_json(marked.to_json())
    assert again.provenance == {"seed": 7, "software": {"torch": "x"}}
    assert again == genotype and "provenance" not in genotype.to_dict()
    with pytest.raises(GenotypeError, match="'provenance' must be a JSON object, got list"):
        Genotype.from_dict(dict(marked.to_dict(), provenance=[1]))
