"""The synthetic "what moves where" store: its layout, determinism, and why fusion matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from adf_service.features import (
    ClipSet,
    FeatureStore,
    FeatureStoreError,
    SyntheticDataError,
    SynthSpec,
    generate_synthetic_store,
)
from adf_service.features.synth import _draw_scenes, deeper_layer

SMALL = dict(n_train=40, n_test=12, n_classes=3, channels=(8, 8, 4), spatial=(2, 5, 5))


def test_synthetic_store_has_the_documented_layout(tmp_path: Path) -> None:
    store = generate_synthetic_store(tmp_path / "s", n_train=30, n_test=10, n_train_views=3)
    assert store.modalities == ("rgb", "flow", "pose") and store.layers == ("layer3", "layer4")
    shapes = {m: (store.layer_shape(m, "layer3"), store.layer_shape(m, "layer4"))
              for m in store.modalities}
    assert shapes == {"rgb": ((32, 4, 7, 7), (64, 2, 4, 4)),
                      "flow": ((32, 4, 7, 7), (64, 2, 4, 4)),
                      "pose": ((8, 4, 7, 7), (16, 2, 4, 4))}
    assert store.classes == tuple(f"moving-object-{k}" for k in range(4))
    assert store.manifest.splits == {"test": 10, "train": 30}
    assert store.n_views("train") == 3 and store.manifest.dtype == "float16"
    provenance = store.manifest.provenance
    assert provenance["generator"] == "adf_service.features.synth.generate_synthetic_store"
    assert provenance["parameters"]["layout"] == "at" and provenance["seed"] == 0
    assert provenance["parameters"]["channels"] == [32, 32, 8]
    assert not store.layer_array("rgb", "layer3", "train", 2).flags.owndata  # zero-copy


def test_same_seed_gives_byte_identical_arrays(tmp_path: Path) -> None:
    a = generate_synthetic_store(tmp_path / "a", seed=5, layout="beside", **SMALL)
    b = generate_synthetic_store(tmp_path / "b", seed=5, layout="beside", **SMALL)
    c = generate_synthetic_store(tmp_path / "c", seed=6, layout="beside", **SMALL)
    assert (tmp_path / "a" / "features.arrow").read_bytes() == \
           (tmp_path / "b" / "features.arrow").read_bytes()
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.labels(split), b.labels(split))
        for modality in a.modalities:
            for layer in a.layers:
                x = a.layer_array(modality, layer, split, 0)
                assert x.tobytes() == b.layer_array(modality, layer, split, 0).tobytes()
                assert x.tobytes() != c.layer_array(modality, layer, split, 0).tobytes()


def test_train_views_share_the_label_but_not_the_noise(tmp_path: Path) -> None:
    store = generate_synthetic_store(tmp_path / "s", **SMALL)
    view0 = store.layer_array("rgb", "layer3", "train", 0).astype(np.float32)
    view1 = store.layer_array("rgb", "layer3", "train", 1).astype(np.float32)
    assert not np.array_equal(view0, view1)
    # same objects at the same places: the views agree far more than two clips do
    same_clip = np.mean([np.corrcoef(view0[i].ravel(), view1[i].ravel())[0, 1]
                         for i in range(10)])
    other_clip = np.mean([np.corrcoef(view0[i].ravel(), view1[i + 1].ravel())[0, 1]
                          for i in range(10)])
    assert same_clip > other_clip + 0.3


@pytest.mark.parametrize("layout", ["at", "beside"])
def test_every_type_is_in_every_clip_and_the_label_sits_at_or_beside_the_motion(
        layout: str) -> None:
    spec = SynthSpec(n_classes=4, spatial=(4, 7, 7), layout=layout)  # type: ignore[arg-type]
    scenes = _draw_scenes(spec, 500, np.random.default_rng(0))
    rows = np.arange(500)
    for types in scenes.types:
        assert sorted(types[types >= 0].tolist()) == [0, 1, 2, 3]
    offset = 0 if layout == "at" else 1
    assert (scenes.mover % 7 < 7 - offset).all()
    np.testing.assert_array_equal(scenes.types[rows, scenes.mover + offset], scenes.labels)
    assert (scenes.distractor != scenes.mover).all()
    decoys = scenes.types[rows, scenes.distractor]
    assert ((decoys >= 0) & (decoys != scenes.labels)).all() if layout == "at" else \
        (decoys == -1).all()
    reliable = np.mean(scenes.pose == scenes.mover)
    assert 0.4 < reliable < 0.6  # pose_reliability 0.5
    assert np.bincount(scenes.labels, minlength=4).min() > 100


def test_layer4_is_relu_projection_then_ceil_average_pooling() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 7, 7), dtype=np.float32)
    projection = rng.standard_normal((10, 5), dtype=np.float32)
    expected = nn.functional.avg_pool3d(
        torch.relu(torch.einsum("dc,nc...->nd...", torch.from_numpy(projection),
                                torch.from_numpy(x))), 2, ceil_mode=True)
    np.testing.assert_allclose(deeper_layer(x, projection), expected.numpy(), atol=1e-5)


def test_progress_reports_every_row(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_synthetic_store(tmp_path / "s", progress=lambda d, t: calls.append((d, t)), **SMALL)
    assert calls[-1] == (40 * 2 + 12, 40 * 2 + 12)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize("change, expected", [
    (dict(n_classes=1), "n_classes=1 must be >= 2"),
    (dict(n_classes=24), "24 objects, the moving place and a free cell need 26 cells; "
                         "spatial 5x5 has 25"),
    (dict(spatial=(2, 5)), "spatial=\\(2, 5\\) must be three positive ints"),
    (dict(layout="under"), "layout='under' not in"),
    (dict(layout="beside", spatial=(2, 5, 1)), "layout 'beside' puts 3 objects off column 0"),
    (dict(pose_reliability=1.5), "pose_reliability=1.5 not in \\[0, 1\\]"),
    (dict(noise=0.0), "noise=0.0 must be > 0"),
    (dict(n_test=0), "n_test=0 must be >= 1"),
    (dict(channels=(8, 8)), "channels=\\(8, 8\\) must be three positive ints"),
])
def test_bad_parameters_are_refused(tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(SyntheticDataError, match=expected):
        generate_synthetic_store(tmp_path / "s", **(SMALL | change))
    assert not (tmp_path / "s").exists()


def test_an_existing_store_is_kept_unless_overwrite(tmp_path: Path) -> None:
    generate_synthetic_store(tmp_path / "s", **SMALL)
    with pytest.raises(FeatureStoreError, match="already holds a feature store"):
        generate_synthetic_store(tmp_path / "s", **SMALL)
    assert generate_synthetic_store(tmp_path / "s", overwrite=True, seed=1, **SMALL)


# --- the design, verified: late fusion fails, aligned fusion works ----------------------------


def late_fusion_accuracy(store: FeatureStore) -> float:
    """Global average pool of each modality's layer4, concat, linear (the thesis' baseline)."""
    def pooled(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        clips = ClipSet.of(store, split, "layer4")
        xs, y = next(clips.batches(len(clips), shuffle=False, seed=0, epoch=0))
        return torch.cat([x.mean(dim=(2, 3, 4)) for x in xs], dim=1), y

    torch.manual_seed(0)
    x_train, y_train = pooled("train")
    x_test, y_test = pooled("test")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    model = nn.Linear(x_train.shape[1], store.n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model((x_train - mean) / std), y_train).backward()
        optimizer.step()
    with torch.no_grad():
        return (model((x_test - mean) / std).argmax(1) == y_test).float().mean().item()


def conv_fusion_accuracy(store: FeatureStore, modalities: tuple[str, ...],
                         kernel: int = 1, epochs: int = 12) -> float:
    """Concat layer3 maps, Conv3d(kernel) + ReLU, global average pool, linear."""
    torch.manual_seed(0)
    train = ClipSet.of(store, "train", "layer3", modalities)
    test = ClipSet.of(store, "test", "layer3", modalities)
    model = nn.Sequential(nn.Conv3d(sum(train.channels()), 64, kernel, padding=kernel // 2),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(64, store.n_classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                          epochs * train.num_batches(32))
    for epoch in range(epochs):
        for xs, y in train.batches(32, shuffle=True, seed=0, epoch=epoch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.cat(xs, dim=1)), y).backward()
            optimizer.step()
            schedule.step()
    correct = 0
    with torch.no_grad():
        for xs, y in test.batches(256, shuffle=False, seed=0, epoch=0):
            correct += (model(torch.cat(xs, dim=1)).argmax(1) == y).sum().item()
    return correct / len(test)


CHANCE = 0.25
RGB_FLOW_POSE = ("rgb", "flow", "pose")


@pytest.mark.parametrize("n_train, n_test", [(900, 300), (450, 150)])
def test_late_fusion_stays_at_chance_while_conv_fusion_solves_layout_at(
        tmp_path: Path, n_train: int, n_test: int) -> None:
    store = generate_synthetic_store(tmp_path / "at", n_train=n_train, n_test=n_test)
    assert late_fusion_accuracy(store) < CHANCE + 0.12
    assert conv_fusion_accuracy(store, ("rgb",), epochs=4) < CHANCE + 0.12
    assert conv_fusion_accuracy(store, RGB_FLOW_POSE) >= 0.85


@pytest.mark.slow  # about 35 s; the default layout's test above stays in the default suite
def test_layout_beside_needs_spatial_context(tmp_path: Path) -> None:
    store = generate_synthetic_store(tmp_path / "beside", layout="beside")
    assert late_fusion_accuracy(store) < CHANCE + 0.12
    assert conv_fusion_accuracy(store, RGB_FLOW_POSE, kernel=1, epochs=6) < CHANCE + 0.12
    assert conv_fusion_accuracy(store, RGB_FLOW_POSE, kernel=3, epochs=8) >= 0.85
