"""The PC-DARTS supernet: partial channels in the official order, α/β as real parameters."""

import pytest
import torch
import torch.nn.functional as F

from adf_service.space import OPERATOR_SETS, SearchSpace, edges_per_cell
from adf_service.supernet import MixedOp, SearchNetwork, cell_input_sources, channel_shuffle

IN_CHANNELS = (6, 6, 2)


def features(batch=2, shape=(2, 3, 3), channels=IN_CHANNELS):
    torch.manual_seed(0)
    return [torch.randn(batch, c, *shape) for c in channels]


def test_channel_shuffle_interleaves_the_k_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(channel_shuffle(x, 1), x)


def test_mixed_op_slices_then_mixes_then_concats_then_shuffles():
    torch.manual_seed(0)
    op = MixedOp(8, OPERATOR_SETS["S2"], partial_k=4).eval()
    x = torch.randn(2, 8, 2, 3, 3)
    w = F.softmax(torch.randn(len(op.ops)), dim=0)
    mixed = sum(wi * o(x[:, :2]) for wi, o in zip(w, op.ops))
    expected = channel_shuffle(torch.cat([mixed, x[:, 2:]], dim=1), 4)
    assert torch.allclose(op(x, w), expected, atol=1e-6)


def test_untouched_channels_pass_unchanged_to_their_shuffled_places():
    op = MixedOp(8, OPERATOR_SETS["S2"], partial_k=4)
    x = torch.randn(2, 8, 2, 3, 3)
    weights = torch.tensor([0.0] * (len(op.ops) - 1) + [1.0])  # all on `zero`
    out = op(x, weights)
    # After the shuffle, the mixed group (channels 0,1) sits at 0 and 4.
    assert torch.equal(out[:, [0, 4]], torch.zeros_like(out[:, [0, 4]]))
    assert torch.equal(out[:, [1, 2, 3, 5, 6, 7]], x[:, [2, 4, 6, 3, 5, 7]])


def test_k_equal_1_is_plain_darts():
    torch.manual_seed(0)
    op = MixedOp(8, OPERATOR_SETS["S1"], partial_k=1).eval()
    x = torch.randn(2, 8, 2, 3, 3)
    w = F.softmax(torch.randn(len(op.ops)), dim=0)
    darts = sum(wi * o(x) for wi, o in zip(w, op.ops))
    assert torch.allclose(op(x, w), darts, atol=1e-6)
    assert all(o.__class__.__name__ in {"Sequential", "Identity", "Zero"} for o in op.ops)
    assert op.ops[0][1].in_channels == 8  # full channels through every op


def test_alpha_and_beta_are_per_cell_parameters_in_state_dict_and_follow_to():
    space = SearchSpace("S1", n_inputs=3, n_cells=3, channels=8, partial_k=4)
    net = SearchNetwork(space, IN_CHANNELS, n_classes=5)
    m, n_ops = edges_per_cell(3), len(OPERATOR_SETS["S1"])
    assert [tuple(a.shape) for a in net.op_weights] == [(m, n_ops)] * 3
    assert [tuple(b.shape) for b in net.edge_weights] == [(m,)] * 3
    keys = net.state_dict().keys()
    assert {"op_weights.0", "op_weights.2", "edge_weights.1"} <= set(keys)
    assert not (set(map(id, net.arch_parameters())) & set(map(id, net.weight_parameters())))
    assert len(net.arch_parameters()) + len(net.weight_parameters()) == len(list(net.parameters()))
    net = net.double()
    assert all(p.dtype == torch.float64 for p in net.arch_parameters())
    assert float(net.op_weights[0].detach().abs().max()) < 0.01  # 1e-3·randn


def test_edge_softmax_is_taken_over_each_nodes_incoming_edges_only():
    net = SearchNetwork(SearchSpace("S2", 2, 1, 8, 4), IN_CHANNELS, 3)
    with torch.no_grad():
        net.edge_weights[0].copy_(torch.randn(edges_per_cell(2)))
    probs = net.edge_probabilities(0).detach()
    sums = [float(probs[a:b].sum()) for a, b in [(0, 2), (2, 5), (5, 9), (9, 14)]]
    assert sums == pytest.approx([1.0] * 4)


def test_cell_inputs_are_earlier_cells_or_the_stem():
    assert cell_input_sources(0, 3) == [0, 0, 0]
    assert cell_input_sources(1, 3) == [1, 0, 0]
    assert cell_input_sources(3, 3) == [3, 2, 1]
    assert cell_input_sources(2, 1) == [2]


@pytest.mark.parametrize("n_inputs", [1, 2, 3])
@pytest.mark.parametrize("n_cells", [1, 4])
def test_supernet_maps_modalities_to_logits_and_backpropagates_to_alpha_beta(n_inputs, n_cells):
    net = SearchNetwork(SearchSpace("S2", n_inputs, n_cells, 8, 4), IN_CHANNELS, n_classes=5)
    logits = net(features())
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.arch_parameters())


def test_modalities_with_different_t_h_w_are_refused_by_name():
    net = SearchNetwork(SearchSpace("S2", 1, 1, 8, 4), (6, 6), 3)
    x = [torch.randn(2, 6, 2, 3, 3), torch.randn(2, 6, 4, 3, 3)]
    with pytest.raises(ValueError, match=r"share T, H, W.*\(6, 4, 3, 3\)"):
        net(x)


def test_without_edge_norm_and_k_1_a_node_is_the_darts_sum_over_edges_and_ops():
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace("S2", 2, 1, 8, 1), IN_CHANNELS, 3, edge_norm=False).eval()
    with torch.no_grad():
        net.op_weights[0].normal_()
    x = features()
    cell = net.cells[0]
    # By hand: node j = Σ_i Σ_o softmax(α_ij)_o · o(state_i), every edge weighted 1.
    stem = net.stem(x)
    states = [node(stem) for node in cell.inputs]
    e = 0
    for j in range(4):
        node = 0
        for state in list(states):
            probs = F.softmax(net.op_weights[0][e], dim=-1)
            node = node + sum(p * op(state) for p, op in zip(probs, cell.edges[e].ops))
            e += 1
        states.append(node)
    logits = net.classifier(torch.cat(states[2:], dim=1).mean(dim=(2, 3, 4)))
    assert torch.allclose(net(x), logits, atol=1e-5)

    normed = SearchNetwork(SearchSpace("S2", 2, 1, 8, 1), IN_CHANNELS, 3).eval()
    normed.load_state_dict(net.state_dict())  # same w and α; β = 0: softmax(β) = 1/n per node
    assert not torch.allclose(normed(x), logits, atol=1e-3)


def test_without_edge_norm_beta_is_zero_and_neither_searched_nor_trained():
    net = SearchNetwork(SearchSpace("S2", 2, 2, 8, 4), IN_CHANNELS, 3, edge_norm=False)
    assert all(torch.equal(b, torch.zeros_like(b)) and not b.requires_grad for b in net.edge_weights)
    beta = set(map(id, net.edge_weights))
    assert not beta & set(map(id, net.arch_parameters()))
    assert not beta & set(map(id, net.weight_parameters()))
    assert len(net.arch_parameters()) == 2  # α of each cell
    net(features()).sum().backward()
    assert all(p.grad is not None for p in net.arch_parameters())
    assert "edge_weights.1" in net.state_dict()
