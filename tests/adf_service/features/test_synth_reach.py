"""The reach family (layouts ``reach`` and ``lag``): the label needs a set reach across modalities.

The label must be the type of the object exactly d cells right of (``reach``), or L frames after
(``lag``), the mover; read back from the arrays the generator writes, not only from its record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adf_service.features import (
    FeatureStore,
    SyntheticDataError,
    SynthSpec,
    generate_synthetic_store,
    synthetic_scenes,
)
from adf_service.genotype import Genotype
from adf_service.train.fit import TrainConfig, evaluation_run
from adf_service.train.runtime import Runtime
from api.cli import app

CHANCE = 0.25


def near_and_far(layout: str, knob: int, spatial: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """The mover's places and the offset to the labelled place, as docs/synthetic-data.md says."""
    t, h, w = spatial
    if layout == "reach":  # places are cells; the mover's side is columns 0..d-1
        return np.flatnonzero(np.arange(h * w) % w < knob), knob
    return np.flatnonzero(np.arange(t * h * w) // (h * w) < knob), knob * h * w  # frame-cells


def places(store: FeatureStore, modality: str, layout: str, view: int = 0) -> np.ndarray:
    """layer3 of the train split as float32 ``[n, C, P]`` over the layout's places."""
    x = store.layer_array(modality, "layer3", "train", view).astype(np.float32)
    n, c = x.shape[:2]
    return x.mean(axis=2).reshape(n, c, -1) if layout == "reach" else x.reshape(n, c, -1)


# --- the scene, read back from the arrays ------------------------------------------------------


@pytest.mark.parametrize("layout, knob", [("reach", 1), ("reach", 3), ("lag", 2)])
def test_the_label_is_the_type_of_the_object_at_the_offset_from_the_mover(
        tmp_path: Path, layout: str, knob: int) -> None:
    store = generate_synthetic_store(tmp_path / "s", n_train=64, n_test=8, n_train_views=1,
                                     noise=0.05, layout=layout, **{layout: knob})
    spatial = tuple(store.manifest.provenance["parameters"]["spatial"])
    near, offset = near_and_far(layout, knob, spatial)
    field = near + offset
    labels = store.labels("train")
    rows = np.arange(len(labels))
    rgb, flow = places(store, "rgb", layout), places(store, "flow", layout)
    mover = np.linalg.norm(flow, axis=1).argmax(axis=1)  # the strongest motion
    assert np.isin(mover, near).all()
    target = rgb[rows, :, mover + offset]  # [n, C]: what is at the offset from the mover
    prototypes = np.stack([target[labels == k].mean(axis=0) for k in range(4)])
    spread = np.linalg.norm(prototypes[:, None] - prototypes[None], axis=2)
    gap = spread[~np.eye(4, dtype=bool)].min()
    distance = np.linalg.norm(target[:, None, :] - prototypes[None], axis=2)  # [n, K]
    np.testing.assert_array_equal(distance.argmin(axis=1), labels)
    assert distance[rows, labels].max() < 0.2 * gap
    # a dense field, each type equally often in every clip; nothing on the mover's side
    types = np.linalg.norm(rgb[:, :, field, None] - prototypes.T[None, :, None, :], axis=1).argmin(2)
    for clip in types:
        np.testing.assert_array_equal(np.bincount(clip, minlength=4), [len(field) // 4] * 4)
    assert np.linalg.norm(rgb[:, :, near], axis=1).max() < 0.2 * gap
    # no motion where the answer is: a point-wise fusion cannot find it
    assert np.linalg.norm(flow[rows, :, mover + offset], axis=1).max() < 0.2 * gap
    np.testing.assert_array_equal(synthetic_scenes(SynthSpec(
        n_train=64, n_test=8, n_train_views=1, noise=0.05, layout=layout,  # type: ignore[arg-type]
        **{layout: knob}), "train").labels, labels)


def test_lag_views_keep_every_event_at_its_frame(tmp_path: Path) -> None:
    store = generate_synthetic_store(tmp_path / "s", n_train=64, n_test=8, n_train_views=3,
                                     noise=0.05, layout="lag", lag=2)
    movers = [np.linalg.norm(places(store, "flow", "lag", view), axis=1).argmax(axis=1)
              for view in range(3)]
    np.testing.assert_array_equal(movers[0], movers[1])
    np.testing.assert_array_equal(movers[0], movers[2])


# --- the scene record: mover, decoys, balance --------------------------------------------------


@pytest.mark.parametrize("layout, knob", [("reach", 3), ("lag", 3), ("reach", 2)])
def test_mover_is_uniform_and_the_decoys_sit_on_its_side(layout: str, knob: int) -> None:
    spec = SynthSpec(n_train=4000, layout=layout, **{layout: knob})  # type: ignore[arg-type]
    scenes = synthetic_scenes(spec, "train")
    near, offset = near_and_far(layout, knob, spec.spatial)
    rows = np.arange(4000)
    assert scenes.per_frame == (layout == "lag")
    np.testing.assert_array_equal(scenes.types[rows, scenes.mover + offset], scenes.labels)
    assert (scenes.types[:, near] == -1).all() and (scenes.types[:, near + offset] >= 0).all()
    for clip in scenes.types:
        np.testing.assert_array_equal(np.bincount(clip[clip >= 0], minlength=4), [len(near) // 4] * 4)
    counts = np.bincount(scenes.mover, minlength=near.max() + 1)[near]
    expected = 4000 / len(near)
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected
    assert np.bincount(scenes.labels, minlength=4).min() > 0.2 * 4000
    assert np.isin(scenes.distractor, near).all() and (scenes.distractor != scenes.mover).all()
    right = scenes.pose == scenes.mover
    assert 0.45 < right.mean() < 0.55  # pose_reliability 0.5: a decoy half the time
    assert np.isin(scenes.pose, near).all()


def test_synthetic_scenes_names_a_bad_split() -> None:
    with pytest.raises(SyntheticDataError, match="split 'val' not in"):
        synthetic_scenes(SynthSpec(layout="reach"), "val")


# --- determinism, defaults, and the layouts that were there before -----------------------------


@pytest.mark.parametrize("layout", ["reach", "lag"])
def test_same_arguments_give_byte_identical_arrays(tmp_path: Path, layout: str) -> None:
    args = dict(n_train=300, n_test=20, layout=layout, **{layout: 2})
    generate_synthetic_store(tmp_path / "a", seed=4, **args)
    generate_synthetic_store(tmp_path / "b", seed=4, **args)
    generate_synthetic_store(tmp_path / "c", seed=5, **args)
    a, b, c = ((tmp_path / x / "features.arrow").read_bytes() for x in "abc")
    assert a == b and a != c


def layer3_digest(store: FeatureStore) -> str:
    digest = hashlib.sha256()
    for split in ("train", "test"):
        digest.update(store.labels(split).astype(np.int64).tobytes())
        for modality in store.modalities:
            for view in range(store.n_views(split)):
                digest.update(store.layer_array(modality, "layer3", split, view).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("layout, digest", [
    ("at", "2b1d9c83ab2818853ad94a8dd52d2dd9c94b83a17409591d9ddcde4d0f8683c9"),
    ("beside", "bdd3f83060bb2fdbdaf568dcee16a7b67adfc10b622cd57b8135f0f1770d3382"),
])
def test_layouts_at_and_beside_write_what_they_wrote_before_the_reach_family(
        tmp_path: Path, layout: str, digest: str) -> None:
    # Digests of the generator before layouts reach and lag existed. A change here changes
    # every store (and every measured number) of these layouts; so may a numpy upgrade that
    # changes a Generator stream.
    store = generate_synthetic_store(tmp_path / "s", seed=5, layout=layout, n_train=40, n_test=12,
                                     n_classes=3, channels=(8, 8, 4), spatial=(2, 5, 5))
    assert layer3_digest(store) == digest


@pytest.mark.parametrize("layout, knob, spatial", [
    ("reach", None, (2, 4, 6)), ("reach", 5, (2, 4, 10)), ("lag", None, (6, 4, 1)), ("lag", 1, (2, 4, 1)),
    ("at", None, (4, 7, 7)),
])
def test_each_layout_has_its_own_grid_and_records_the_knob_it_used(
        tmp_path: Path, layout: str, knob: int | None, spatial: tuple[int, int, int]) -> None:
    knobs = {} if knob is None else {layout: knob}
    store = generate_synthetic_store(tmp_path / "s", n_train=8, n_test=4, layout=layout, **knobs)
    assert store.layer_shape("rgb", "layer3") == (32, *spatial)
    made = store.manifest.provenance["parameters"]
    assert made["spatial"] == list(spatial) and made["layout"] == layout
    used = {"reach": made["reach"], "lag": made["lag"]}
    assert used == {k: (knob or 3) if k == layout else None for k in used}
    assert store.manifest.name == f"synthetic-what-moves-where-{layout}{used.get(layout) or ''}"


@pytest.mark.parametrize("change, expected", [
    (dict(layout="reach", reach=0), "reach=0 must be an int >= 1"),
    (dict(layout="reach", reach=-2), "reach=-2 must be an int >= 1"),
    (dict(layout="reach", reach=2.5), "reach=2.5 must be an int >= 1"),
    (dict(layout="lag", lag=0), "lag=0 must be an int >= 1"),
    (dict(layout="at", reach=2), "reach=2 is the knob of layout 'reach', not of layout 'at'"),
    (dict(layout="reach", lag=2), "lag=2 is the knob of layout 'lag', not of layout 'reach'"),
    (dict(layout="reach", reach=3, spatial=(2, 4, 7)),
     "layout 'reach' with reach=3 needs W = 2\\*reach = 6 .*got spatial=\\(2, 4, 7\\)"),
    (dict(layout="reach", reach=3, n_classes=5),
     "layout 'reach' balances 5 types over H\\*reach = 12 object cells: needs a multiple of "
     "n_classes=5"),
    (dict(layout="lag", lag=2, spatial=(5, 4, 2)),
     "layout 'lag' with lag=2 needs T = 2\\*lag = 4 .*got spatial=\\(5, 4, 2\\)"),
    (dict(layout="lag", lag=1, spatial=(2, 1, 3), n_classes=2),
     "layout 'lag' balances 2 types over lag\\*H\\*W = 3 object places"),
    (dict(layout="sideways"), "layout='sideways' not in \\{'at', 'beside', 'reach', 'lag'\\}"),
])
def test_bad_knobs_are_refused_naming_the_knob(tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(SyntheticDataError, match=expected):
        generate_synthetic_store(tmp_path / "s", n_train=8, n_test=4, **change)
    assert not (tmp_path / "s").exists()


def test_the_synth_command_writes_a_knob_layout_and_refuses_a_misplaced_knob(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "lag"), "--clips", "40",
                                 "--layout", "lag", "--lag", "2"])
    assert result.exit_code == 0, result.output
    assert "layout lag (lag=2) on T×H×W 4×4×1" in " ".join(result.output.split())
    assert FeatureStore.open(tmp_path / "lag").layer_shape("flow", "layer3") == (32, 4, 4, 1)
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "bad"), "--clips", "40",
                                 "--reach", "2"])
    assert result.exit_code == 2
    assert "reach=2 is the knob of layout 'reach', not of layout 'at'" in " ".join(result.output.split())


# --- the knob, measured: reach d = 3 needs an operator chain that reaches 3 cells --------------


def fixed_genotype(op: str, chain: bool) -> Genotype:
    """S1, I = 1, one cell, one edge per node: node j <- node j-1 (chain) or <- the input."""
    return Genotype("S1", 1, (tuple(((j if chain else 0, op),) for j in range(4)),),
                    discretization="topk")


@pytest.mark.slow  # 20 s on 2 idle cores (2 min at load 5); docs/synthetic-data.md: the measurement
def test_reach_3_is_chance_without_reach_and_solved_by_a_chain_of_3x3x3_convs(tmp_path: Path) -> None:
    store = generate_synthetic_store(tmp_path / "s", n_train=1800, n_test=300, layout="reach", reach=3)
    config = TrainConfig(epochs=15, batch_size=32, lr=0.1, seed=0)

    def top1(genotype: Genotype) -> float:
        run = evaluation_run(genotype, store, 16, config, Runtime(device="cpu"))
        while not run.done:
            run.step_epoch()
        return run.result().test_top1 / 100

    assert top1(fixed_genotype("conv_1x1x1", chain=True)) < CHANCE + 0.1
    assert top1(fixed_genotype("conv_3x3x3", chain=True)) >= 0.9  # reach 1 per node, 4 nodes
