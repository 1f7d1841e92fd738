"""ClipSet: selections of a split, their halves, and the mini-batches training consumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adf_service.features import ClipSet, FeatureStore, FeatureStoreError


@pytest.fixture
def store(tiny_store) -> FeatureStore:
    return FeatureStore.open(tiny_store.path)


def views_of(clips: ClipSet, xs: list[torch.Tensor]) -> list[tuple[int, int]]:
    """(clip position, view) of each sample of a batch, found by exact comparison."""
    store, first = clips.store, clips.modalities[0]
    per_view = [store.layer_array(first, clips.layer, clips.split, v).astype(np.float32)
                for v in range(store.n_views(clips.split))]
    found = []
    for sample in xs[0].numpy():
        hits = [(int(i), v) for v, arr in enumerate(per_view)
                for i in np.flatnonzero((arr == sample).all(axis=(1, 2, 3, 4)))]
        assert len(hits) == 1
        found.append(hits[0])
    return found


def test_of_defaults_to_every_modality_in_store_order(store: FeatureStore) -> None:
    clips = ClipSet.of(store, "train", "layer3")
    assert clips.modalities == ("rgb", "flow", "pose")
    assert len(clips) == 5 and clips.indices.dtype == np.int64
    assert clips.channels() == (3, 2, 1)
    assert clips.spatial_shape() == (2, 3, 3)
    torch.testing.assert_close(clips.labels(), torch.from_numpy(store.labels("train")))
    assert ClipSet.of(store, "test", "layer4", ["pose", "rgb"]).channels() == (2, 6)


@pytest.mark.parametrize("split, layer, modalities, expected", [
    ("train", "layer3", ["rgb", "depth"], "has modalities rgb, flow, pose; asked for depth"),
    ("train", "layer5", None, "has layers layer3, layer4; asked for 'layer5'"),
    ("val", "layer3", None, "has no clips in split 'val'"),
    ("train", "layer3", ["rgb", "rgb"], "modalities \\['rgb', 'rgb'\\] repeat"),
    ("train", "layer3", [], "at least one modality"),
])
def test_of_validates_names(store: FeatureStore, split: str, layer: str,
                            modalities: list[str] | None, expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected):
        ClipSet.of(store, split, layer, modalities)


def test_spatial_shape_refuses_modalities_that_differ(make_tiny_store) -> None:
    shapes = {"rgb": {"layer3": [3, 2, 3, 3], "layer4": [6, 1, 2, 2]},
              "flow": {"layer3": [2, 2, 3, 3], "layer4": [4, 1, 1, 1]},
              "pose": {"layer3": [1, 2, 3, 3], "layer4": [2, 1, 2, 2]}}
    store = FeatureStore.open(make_tiny_store(shapes=shapes).path)
    with pytest.raises(FeatureStoreError, match="layer4 T, H, W differ between modalities "
                                                "\\(rgb \\[1, 2, 2\\], flow \\[1, 1, 1\\]"):
        ClipSet.of(store, "train", "layer4").spatial_shape()


@settings(max_examples=25, deadline=None,  # the store is only read
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.15, 0.85), seed=st.integers(0, 2**32 - 1))
def test_split_fraction_is_disjoint_covering_and_deterministic(
        tiny_store, fraction: float, seed: int) -> None:
    clips = ClipSet.of(FeatureStore.open(tiny_store.path), "train", "layer3")
    first, second = clips.split_fraction(fraction, seed)
    assert len(first) == round(fraction * 5) and len(second) == 5 - len(first)
    assert set(first.indices).isdisjoint(second.indices)
    assert sorted([*first.indices, *second.indices]) == list(range(5))
    again, _ = clips.split_fraction(fraction, seed)
    np.testing.assert_array_equal(first.indices, again.indices)
    assert first.modalities == clips.modalities and first.layer == "layer3"


def test_split_fraction_of_a_part_stays_inside_the_part(store: FeatureStore) -> None:
    part, _ = ClipSet.of(store, "train", "layer3").split_fraction(0.8, seed=1)
    a, b = part.split_fraction(0.5, seed=2)
    assert set(a.indices) | set(b.indices) == set(part.indices)


@pytest.mark.parametrize("fraction, expected", [
    (0.05, "leaves a part empty \\(0 / 5\\)"),
    (0.95, "leaves a part empty \\(5 / 0\\)"),
    (0.0, "fraction 0.0 not in \\(0, 1\\)"),
    (1.0, "fraction 1.0 not in"),
])
def test_split_fraction_refuses_an_empty_part(store: FeatureStore, fraction: float,
                                              expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected):
        ClipSet.of(store, "train", "layer3").split_fraction(fraction, seed=0)


def test_batches_have_the_promised_shapes_and_dtypes(store: FeatureStore) -> None:
    clips = ClipSet.of(store, "train", "layer3")
    batches = list(clips.batches(2, shuffle=True, seed=0, epoch=0))
    assert len(batches) == clips.num_batches(2) == 3
    for xs, y in batches:
        assert [tuple(x.shape[1:]) for x in xs] == [(3, 2, 3, 3), (2, 2, 3, 3), (1, 2, 3, 3)]
        assert all(x.dtype == torch.float32 and x.shape[0] == y.shape[0] for x in xs)
        assert y.dtype == torch.int64
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert clips.num_batches(2, drop_last=True) == 2
    assert [len(y) for _, y in clips.batches(2, shuffle=True, seed=0, epoch=0,
                                             drop_last=True)] == [2, 2]


def test_batches_visit_every_clip_once_with_its_own_label_and_features(
        store: FeatureStore) -> None:
    clips = ClipSet.of(store, "train", "layer4")
    seen = []
    labels = store.labels("train")
    for xs, y in clips.batches(2, shuffle=True, seed=3, epoch=1):
        found = views_of(clips, xs)
        assert [labels[i] for i, _ in found] == y.tolist()
        for m, x in enumerate(xs):  # every modality comes from the same clip and view
            for sample, (i, v) in zip(x.numpy(), found):
                expected = store.layer_array(clips.modalities[m], "layer4", "train", v)[i]
                np.testing.assert_array_equal(sample, expected.astype(np.float32))
        seen += [i for i, _ in found]
    assert sorted(seen) == list(range(5))


def test_batches_are_deterministic_for_seed_and_epoch(store: FeatureStore) -> None:
    clips = ClipSet.of(store, "train", "layer3")

    def run(seed: int, epoch: int) -> list[torch.Tensor]:
        return [t for xs, y in clips.batches(2, shuffle=True, seed=seed, epoch=epoch)
                for t in (*xs, y)]

    for a, b in zip(run(4, 2), run(4, 2), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(run(4, 2), run(4, 3)))


def test_train_views_change_across_epochs_and_test_uses_view_0(store: FeatureStore) -> None:
    train = ClipSet.of(store, "train", "layer3")
    chosen = []
    for epoch in range(6):
        xs, _ = next(train.batches(5, shuffle=False, seed=0, epoch=epoch))
        found = sorted(views_of(train, xs))  # within a batch: storage order
        assert [i for i, _ in found] == list(range(5))
        chosen.append(tuple(v for _, v in found))
    assert len(set(chosen)) > 1
    assert {v for views in chosen for v in views} == {0, 1}
    test = ClipSet.of(store, "test", "layer3")
    xs, _ = next(test.batches(3, shuffle=True, seed=0, epoch=5))
    assert {v for _, v in views_of(test, xs)} == {0}


def test_a_fixed_view_can_be_asked_for(store: FeatureStore) -> None:
    train = ClipSet.of(store, "train", "layer3")
    for epoch in range(3):
        xs, _ = next(train.batches(5, shuffle=True, seed=0, epoch=epoch, view=1))
        assert {v for _, v in views_of(train, xs)} == {1}
    with pytest.raises(FeatureStoreError, match="view 2 not in \\[0, 2\\)"):
        next(train.batches(5, shuffle=True, seed=0, epoch=0, view=2))


def test_unshuffled_batches_follow_the_clip_order(store: FeatureStore) -> None:
    _, part = ClipSet.of(store, "test", "layer3").split_fraction(0.34, seed=0)
    labels = torch.cat([y for _, y in part.batches(1, shuffle=False, seed=0, epoch=0)])
    torch.testing.assert_close(labels, part.labels())
    found = [views_of(part, xs)[0][0]
             for xs, _ in part.batches(1, shuffle=False, seed=0, epoch=0)]
    assert found == part.indices.tolist()


@pytest.mark.parametrize("kwargs, expected", [
    (dict(batch_size=0), "batch_size 0 must be >= 1"),
    (dict(batch_size=2, seed=-1), "seed -1 and epoch 0 must be >= 0"),
])
def test_batches_refuse_bad_arguments(store: FeatureStore, kwargs: dict, expected: str) -> None:
    options = dict(shuffle=True, seed=0, epoch=0) | kwargs
    with pytest.raises(FeatureStoreError, match=expected):
        next(ClipSet.of(store, "train", "layer3").batches(**options))
