"""The discrete fusion network built from a genotype, and the late-fusion baseline."""

import random

import torch

from adf_service.fusion import BaselineNetwork, FusionNetwork, count_parameters
from adf_service.genotype import Genotype, random_genotype
from adf_service.ops import conv_weight_count, create_op
from adf_service.space import SearchSpace


def test_fusion_network_has_one_full_channel_affine_op_per_kept_edge():
    g = random_genotype(SearchSpace("S2", 2, 3, 8, 4), "topk", random.Random(0))
    net = FusionNetwork(g, (6, 6, 2), n_classes=5, channels=16)
    assert len(net.cells) == 3  # no depth gap
    ops = [op for cell in net.cells for node in cell.nodes for op in node]
    assert len(ops) == sum(len(n) for c in g.cells for n in c)
    expected = sum(conv_weight_count(create_op(o, 16)) for c in g.cells for n in c for _, o in n)
    assert sum(conv_weight_count(op) for op in ops) == expected
    assert all(m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    x = [torch.randn(3, c, 2, 3, 3) for c in (6, 6, 2)]
    assert net(x).shape == (3, 5)


def test_fusion_cell_sums_its_kept_edges():
    cell = (((0, "skip"),), ((0, "skip"), (1, "skip")), ((2, "skip"),), ((0, "skip"),))
    g = Genotype("S2", 1, (cell,))
    net = FusionNetwork(g, (4,), n_classes=2, channels=4).eval()
    x = torch.randn(2, 4, 1, 2, 2)
    stem = net.stem([x])
    in0 = net.cells[0].inputs[0](stem)
    out = torch.cat([in0, 2 * in0, 2 * in0, in0], dim=1)
    assert torch.allclose(net.cells[0]([stem]), out, atol=1e-6)


def test_baseline_pools_each_modality_concats_and_classifies():
    net = BaselineNetwork((6, 2), n_classes=3)
    assert count_parameters(net) == (6 + 2) * 3 + 3
    x = [torch.randn(2, 6, 2, 4, 4), torch.randn(2, 2, 1, 2, 2)]  # shapes may differ
    pooled = torch.cat([x[0].mean((2, 3, 4)), x[1].mean((2, 3, 4))], 1)
    assert torch.allclose(net(x), net.classifier(pooled))
