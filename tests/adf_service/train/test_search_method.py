"""Issue 12's method fixes: the snapshot after warm-up, the `learned` mark, β switched off."""

import numpy as np
import pytest
import torch

from adf_service.features import ClipSet, FeatureStore, FeatureStoreWriter, generate_synthetic_store
from adf_service.genotype import Genotype, discretize
from adf_service.space import SearchSpace
from adf_service.train import CheckpointError, SearchConfig, SearchRun, drive

DARTS_SPACE = SearchSpace("S2", n_inputs=1, n_cells=1, channels=8, partial_k=1)
# Measured on this store (4 classes, 128 α-half clips): val top-1 25 → 68 % in 4 epochs.
LEARNABLE = dict(epochs=4, warmup_epochs=1, batch_size=16, lr=0.3, arch_lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def at_store(tmp_path_factory) -> FeatureStore:
    """The learnable 'at' layout, small: 256 train clips of [C, 1, 3, 3]."""
    return generate_synthetic_store(
        tmp_path_factory.mktemp("at") / "store",
        n_train=256, n_test=8, n_classes=4, seed=0,
        channels=(8, 8, 4), spatial=(1, 3, 3), noise=0.2, layout="at",
    )


def with_shuffled_labels(store: FeatureStore, out, seed: int) -> FeatureStore:
    """The same features with each split's labels permuted: class counts kept, no signal left."""
    rng = np.random.default_rng(seed)
    shapes = {m: {"layer3": list(store.layer_shape(m, "layer3"))} for m in store.modalities}
    with FeatureStoreWriter(
        out, name="shuffled-labels", shapes=shapes, classes=store.classes,
        n_train_views=store.n_views("train"), dtype="float32",
    ) as writer:
        for split in store.splits:
            labels = rng.permutation(store.labels(split))
            for view in range(store.n_views(split)):
                arrays = {m: store.layer_array(m, "layer3", split, view) for m in store.modalities}
                for i, clip in enumerate(store.clip_ids(split)):
                    writer.add(clip, labels[i], split, view,
                               {m: {"layer3": a[i]} for m, a in arrays.items()})
    return FeatureStore.open(out)


@pytest.fixture(scope="module")
def shuffled_store(at_store, tmp_path_factory) -> FeatureStore:
    return with_shuffled_labels(at_store, tmp_path_factory.mktemp("shuffled") / "store", seed=5)


def search(store: FeatureStore, space: SearchSpace = DARTS_SPACE, **overrides):
    config = SearchConfig(**{**LEARNABLE, **overrides})
    return drive(SearchRun(space, ClipSet.of(store, "train", "layer3"), config))


# --- the best snapshot comes from an epoch after the α warm-up ---------------------------


def test_a_warmup_epoch_with_the_lowest_val_loss_is_not_the_snapshot(shuffled_store):
    # On labels without signal the weights overfit: the val loss is lowest early, in warm-up.
    result = search(shuffled_store, warmup_epochs=2, epochs=4, batch_size=8)
    losses = [r.val_loss for r in result.history]
    assert int(np.argmin(losses)) + 1 <= 2, f"precondition: a warm-up epoch is best ({losses})"
    assert result.best_epoch == 3 + int(np.argmin(losses[2:]))
    assert result.best_val_loss == min(losses[2:])
    assert result.genotype == Genotype.from_dict(result.history[result.best_epoch - 1].extra["genotype"])

    anywhere = search(shuffled_store, warmup_epochs=2, epochs=4, batch_size=8, snapshot_from="any")
    assert anywhere.best_epoch == int(np.argmin(losses)) + 1
    assert anywhere.best_val_loss == min(losses)


def test_a_search_that_is_all_warmup_takes_its_last_epoch(at_store):
    config = SearchConfig(**{**LEARNABLE, "epochs": 2, "warmup_epochs": 2})
    run = SearchRun(DARTS_SPACE, ClipSet.of(at_store, "train", "layer3"), config)
    run.step_epoch()
    with pytest.raises(RuntimeError, match="no snapshot yet: 1 epoch.*after the 2 warm-up"):
        run.result()
    assert drive(run).best_epoch == 2


def test_unknown_snapshot_rule_and_margin_are_refused_by_name():
    with pytest.raises(ValueError, match=r"snapshot_from 'best' not in"):
        SearchConfig(snapshot_from="best")
    with pytest.raises(ValueError, match=r"learned_margin=-101 \(top-1 points\) not in \[-100, 100\)"):
        SearchConfig(learned_margin=-101)


# --- learned / unlearned ------------------------------------------------------------------


def test_a_supernet_on_the_at_layout_with_k_1_learns(at_store):
    result = search(at_store)
    assert result.chance_top1 == 25.0
    assert result.max_val_top1 == max(r.val_top1 for r in result.history)
    assert result.max_val_top1 >= 35.0 and result.learned


def test_a_supernet_on_labels_without_signal_is_unlearned(shuffled_store):
    result = search(shuffled_store)
    assert result.chance_top1 == 25.0
    assert result.max_val_top1 < 35.0 and not result.learned


# --- edge_norm off: β is out of the search --------------------------------------------------


def test_without_edge_norm_beta_stays_zero_and_discretize_sees_uniform_beta(at_store):
    result = search(at_store, edge_norm=False, discretization="topk")
    assert all(torch.equal(b, torch.zeros_like(b)) for b in result.edge_weights)
    assert any(not torch.equal(a, a.new_zeros(a.shape)) for a in result.op_weights)
    uniform = [torch.zeros_like(b) for b in result.edge_weights]
    assert result.genotype == discretize(result.op_weights, uniform, DARTS_SPACE, "topk")
    # topk then keeps, per node, the edges whose strongest non-zero op is strongest (α alone).
    probs = torch.softmax(result.op_weights[0], -1)[:, :-1].max(-1).values  # S2's last op: zero
    kept = [source for source, _ in result.genotype.cells[0][3]]
    assert kept == [int(torch.argmax(probs[6:10]))]


def test_a_checkpoint_with_edge_norm_off_is_refused_with_it_on(at_store, tmp_path):
    clips = ClipSet.of(at_store, "train", "layer3")
    off = SearchConfig(**{**LEARNABLE, "epochs": 1, "edge_norm": False})
    drive(SearchRun(DARTS_SPACE, clips, off), checkpoint=tmp_path / "s.ckpt")
    with pytest.raises(CheckpointError, match=r"edge_norm=False \(now True\)"):
        drive(SearchRun(DARTS_SPACE, clips, SearchConfig(**{**LEARNABLE, "epochs": 1})), checkpoint=tmp_path / "s.ckpt")
