"""Control genotypes: one operator on every edge, valid in every setting, buildable, and refused by
a name the setting does not have."""

import pytest
import torch

from adf_service.fusion import FusionNetwork
from adf_service.genotype import Genotype, GenotypeError, control_genotype, control_names, discretize
from adf_service.ops import conv_weight_count
from adf_service.space import OPERATOR_SETS, SearchSpace, edges_per_cell


def test_control_names_put_the_plumbing_controls_first_then_the_set_in_table_order():
    assert control_names(SearchSpace("S1", 1, 1, 8, 1)) == (
        "all_skip",
        "all_conv_1x1x1",
        "all_conv_3x3x3",
        "all_sep_conv_3x3x3",
        "all_dil_conv_3x3x3",
        "all_conv_2plus1d_3x3x3",
    )
    assert control_names(SearchSpace("S2", 1, 1, 8, 1)) == (
        "all_skip",
        "all_conv_1x1x1",
        "all_sep_conv_3x3x3",
        "all_conv_2plus1d_3x3x3_narrow",
        "all_flat_conv_3x3x3",
    )


@pytest.mark.parametrize("operators", sorted(OPERATOR_SETS))
@pytest.mark.parametrize("method", ["all", "topk"])
@pytest.mark.parametrize("n_inputs", [1, 2, 3])
def test_every_control_is_a_valid_genotype_of_its_setting_with_one_op(operators, method, n_inputs):
    space = SearchSpace(operators, n_inputs, 2, 8, 1)
    for name in control_names(space):
        g = control_genotype(space, method, name)
        g.validate()
        assert g.matches(space)
        assert g.discretization == f"control-{method}"
        assert {op for cell in g.cells for node in cell for _, op in node} == {name.removeprefix("all_")}
        assert Genotype.from_json(g.to_json()) == g


@pytest.mark.parametrize("n_inputs", [1, 2, 3])
def test_all_control_keeps_the_same_edges_as_discretize_all(n_inputs):
    space = SearchSpace("S2", n_inputs, 1, 8, 1)
    m, n_ops = edges_per_cell(n_inputs), len(space.op_names)
    discretized = discretize([torch.zeros(m, n_ops)], [torch.zeros(m)], space, "all")
    control = control_genotype(space, "all", "all_skip")
    assert [[s for s, _ in node] for node in control.cells[0]] == [
        [s for s, _ in node] for node in discretized.cells[0]
    ]


@pytest.mark.parametrize(
    "n_inputs, sources",
    [
        # inputs are 0..I−1 (0 = previous cell), hidden node k is I+k
        (1, [[0], [1], [2], [3]]),  # the chain input → node0 → node1 → node2 → node3
        (2, [[0, 1], [0, 2], [2, 3], [3, 4]]),
        (3, [[0, 1, 2], [0, 1, 3], [0, 3, 4], [3, 4, 5]]),
    ],
)
def test_topk_control_keeps_each_nodes_I_nearest_predecessors(n_inputs, sources):
    space = SearchSpace("S1", n_inputs, 2, 8, 1)
    g = control_genotype(space, "topk", "all_conv_3x3x3")
    for cell in g.cells:
        assert [[s for s, _ in node] for node in cell] == sources
        assert all(len(node) == n_inputs for node in cell)


def test_all_skip_topk_with_one_input_passes_the_input_node_down_the_chain():
    g = control_genotype(SearchSpace("S2", 1, 1, 4, 1), "topk", "all_skip")
    net = FusionNetwork(g, (4,), n_classes=2, channels=4).eval()
    stem = net.stem([torch.randn(2, 4, 1, 2, 2)])
    in0 = net.cells[0].inputs[0](stem)
    assert torch.allclose(net.cells[0]([stem]), torch.cat([in0] * 4, dim=1), atol=1e-6)


@pytest.mark.parametrize("method", ["all", "topk"])
def test_every_control_builds_into_a_fusion_network_and_runs(method):
    space = SearchSpace("S1", 2, 2, 8, 1)
    x = [torch.randn(2, c, 2, 3, 3) for c in (6, 6, 2)]
    op_weights = {}
    for name in control_names(space):
        net = FusionNetwork(control_genotype(space, method, name), (6, 6, 2), n_classes=5, channels=8)
        assert net(x).shape == (2, 5)
        op_weights[name] = sum(conv_weight_count(op) for cell in net.cells for node in cell.nodes for op in node)
    n_edges = 2 * (edges_per_cell(2) if method == "all" else 4 * 2)
    assert op_weights["all_skip"] == 0  # only the cells' plumbing has weights
    assert op_weights["all_conv_1x1x1"] == n_edges * 8 * 8
    assert op_weights["all_conv_3x3x3"] == n_edges * 8 * 8 * 27


def test_an_unknown_control_is_refused_with_the_valid_names_and_a_suggestion():
    space = SearchSpace("S2", 2, 1, 8, 1)
    with pytest.raises(GenotypeError, match=r"'all_skp'.*S2 \(all_skip, all_conv_1x1x1, .*did you mean 'all_skip'"):
        control_genotype(space, "all", "all_skp")


@pytest.mark.parametrize("name", ["all_conv_3x3x3", "all_zero", "skip"])
def test_a_control_outside_the_setting_is_refused(name):
    # conv_3x3x3 is in S1 only; zero is never an edge's op; a name needs the all_ prefix
    with pytest.raises(GenotypeError, match=f"control genotype '{name}' not among the controls of operator set S2"):
        control_genotype(SearchSpace("S2", 2, 1, 8, 1), "all", name)


def test_a_control_refuses_an_unknown_discretization():
    with pytest.raises(GenotypeError, match="discretization 'top2' not in"):
        control_genotype(SearchSpace("S2", 2, 1, 8, 1), "top2", "all_skip")
