"""The search picks the operators the data needs (issue 12 item 4): on reach d = 3 (the label is the
object 3 cells right of the mover), the kept edges of searched S1 genotypes carry the 3×3×3 conv
family (conv_3x3x3, sep_conv_3x3x3, conv_2plus1d_3x3x3: reach 1 per op, and any order works)
more often than the uniform prior, and skip / conv_1x1x1 (no reach) less often.

Slow: three searches of 15 epochs on 2,100 clips, about 2.5 minutes on 2 cores.
"""

import pytest

from adf_service.features.dataset import ClipSet
from adf_service.features.synth import generate_synthetic_store
from adf_service.space import SearchSpace
from adf_service.train import SearchConfig, SearchRun, drive

pytestmark = pytest.mark.slow

CONV_FAMILY = {"conv_3x3x3", "sep_conv_3x3x3", "conv_2plus1d_3x3x3"}
NO_REACH = {"skip", "conv_1x1x1"}


def test_searches_on_reach_3_choose_the_conv_family_above_the_prior(tmp_path):
    store = generate_synthetic_store(tmp_path / "store", n_train=1575, n_test=525, layout="reach", reach=3)
    space = SearchSpace("S1", 1, 1, channels=16, partial_k=1)
    ops = []
    for seed in range(3):
        config = SearchConfig(epochs=15, warmup_epochs=3, batch_size=32, lr=0.1, arch_lr=3e-3,
                              discretization="topk", seed=seed)
        found = drive(SearchRun(space, ClipSet.of(store, "train", "layer3"), config))
        assert found.learned, found.max_val_top1
        ops += [op for cell in found.genotype.cells for node in cell for _, op in node]
    choices = [op for op in space.op_names if op != "zero"]
    prior = {op: 1 / len(choices) for op in choices}
    share = {op: ops.count(op) / len(ops) for op in choices}
    assert sum(share[op] for op in CONV_FAMILY) > sum(prior[op] for op in CONV_FAMILY), share
    assert sum(share[op] for op in NO_REACH) < sum(prior[op] for op in NO_REACH), share
