"""FeatureStoreWriter: validation of every row, and a manifest written last."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from adf_service.features import FeatureStore, FeatureStoreError, FeatureStoreWriter

SHAPES = {
    "rgb": {"layer3": [3, 2, 3, 3], "layer4": [6, 1, 2, 2]},
    "flow": {"layer3": [2, 2, 3, 3], "layer4": [4, 1, 2, 2]},
}


def features(rng: np.random.Generator | None = None, dtype: type = np.float32,
             ) -> dict[str, dict[str, np.ndarray]]:
    rng = rng or np.random.default_rng(0)
    return {m: {l: rng.standard_normal(s).astype(dtype) for l, s in per.items()}
            for m, per in SHAPES.items()}


def writer(path: Path, **kwargs: object) -> FeatureStoreWriter:
    options: dict[str, object] = dict(name="w", shapes=SHAPES, classes=["a", "b"],
                                      n_train_views=2)
    options.update(kwargs)
    return FeatureStoreWriter(path, **options)  # type: ignore[arg-type]


def test_manifest_is_written_last_with_clip_counts_per_split(tmp_path: Path) -> None:
    w = writer(tmp_path / "s", provenance={"extractor": "test", "seed": 3})
    w.add("c1", 0, "train", 0, features())
    w.add("c1", 0, "train", 1, features())
    w.add("c2", 1, "test", 0, features())
    assert not (tmp_path / "s" / "manifest.json").exists()
    with pytest.raises(FeatureStoreError, match="manifest.json is missing .*interrupted"):
        FeatureStore.open(tmp_path / "s")
    manifest = w.close()
    assert manifest.splits == {"test": 1, "train": 1}
    on_disk = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert on_disk["splits"] == {"test": 1, "train": 1}
    assert on_disk["provenance"] == {"extractor": "test", "seed": 3}
    assert on_disk["modalities"] == ["rgb", "flow"] and on_disk["layers"] == ["layer3", "layer4"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["features.arrow",
                                                                  "manifest.json"]


def test_explicit_modality_order_overrides_the_shapes_order(tmp_path: Path) -> None:
    with writer(tmp_path / "s", modalities=["flow", "rgb"]) as w:
        w.add("c", 0, "test", 0, features())
    assert FeatureStore.open(tmp_path / "s").modalities == ("flow", "rgb")


def test_wrong_shape_names_clip_modality_layer_and_both_shapes(tmp_path: Path) -> None:
    bad = features()
    bad["flow"]["layer3"] = np.zeros((2, 2, 3, 4), np.float32)
    with pytest.raises(FeatureStoreError) as err, writer(tmp_path / "s") as w:
        w.add("clip_7", 0, "train", 0, bad)
    message = str(err.value)
    assert "'clip_7'" in message and "flow.layer3" in message
    assert "[2, 2, 3, 4]" in message and "[2, 2, 3, 3]" in message


@pytest.mark.parametrize("change, expected", [
    (lambda f: f.pop("flow"), "modalities \\['rgb'\\], expected \\['rgb', 'flow'\\]"),
    (lambda f: f["rgb"].pop("layer4"), "modality 'rgb' lacks layer 'layer4'"),
    (lambda f: f["rgb"].__setitem__("layer3", np.ones((3, 2, 3, 3), np.int32)),
     "rgb.layer3 has dtype int32, expected a float dtype"),
    (lambda f: f["rgb"].__setitem__("layer3", np.full((3, 2, 3, 3), 1e6, np.float32)),
     "rgb.layer3 has non-finite values as float16"),
    (lambda f: f["rgb"]["layer3"].__setitem__((0, 0, 0, 0), np.nan), "non-finite"),
])
def test_invalid_features_are_refused_naming_the_clip(
        tmp_path: Path, change: Callable[[dict], object], expected: str) -> None:
    bad = features()
    change(bad)
    with pytest.raises(FeatureStoreError, match=expected) as err, writer(tmp_path / "s") as w:
        w.add("clip_3", 1, "train", 0, bad)
    assert "clip 'clip_3' view 0" in str(err.value)


@pytest.mark.parametrize("row, expected", [
    (("c", 2, "train", 0), "label 2 not in \\[0, 2\\)"),
    (("c", -1, "train", 0), "label -1"),
    (("c", 0, "test", 1), "view 1 not in \\[0, 1\\) for split 'test'"),
    (("c", 0, "train", 2), "view 2 not in \\[0, 2\\)"),
    (("", 0, "train", 0), "clip_id '' must be a non-empty string"),
    (("c", 0, "", 0), "split '' must be a non-empty string"),
])
def test_invalid_rows_are_refused(tmp_path: Path, row: tuple, expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected), writer(tmp_path / "s") as w:
        w.add(*row, features())


@pytest.mark.parametrize("second, expected", [
    (("c", 0, "train", 0), "this view was already added"),
    (("c", 1, "train", 1), "label 1, but an earlier view has label 0"),
    (("c", 0, "test", 0), "split 'test', but an earlier view is in split 'train'"),
])
def test_views_of_a_clip_must_agree(tmp_path: Path, second: tuple, expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected), writer(tmp_path / "s") as w:
        w.add("c", 0, "train", 0, features())
        w.add(*second, features())


def test_train_clip_missing_a_view_fails_close_and_leaves_no_store(tmp_path: Path) -> None:
    w = writer(tmp_path / "s")
    w.add("lonely", 0, "train", 0, features())
    with pytest.raises(FeatureStoreError, match="train clip 'lonely' lacks views \\[1\\]"):
        w.close()
    assert list((tmp_path / "s").iterdir()) == []


def test_closing_without_clips_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="no clips were added"):
        writer(tmp_path / "s").close()


def test_an_exception_inside_the_with_block_leaves_no_store(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), writer(tmp_path / "s") as w:
        w.add("c", 0, "test", 0, features())
        raise RuntimeError("extractor crashed")
    assert list((tmp_path / "s").iterdir()) == []
    with pytest.raises(FeatureStoreError, match="not a feature store"):
        FeatureStore.open(tmp_path / "s")


def test_an_existing_store_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    with writer(tmp_path / "s") as w:
        w.add("old", 0, "test", 0, features())
    with pytest.raises(FeatureStoreError, match="already holds a feature store.*overwrite"):
        writer(tmp_path / "s")
    with writer(tmp_path / "s", overwrite=True) as w:
        w.add("new", 1, "test", 0, features())
    assert FeatureStore.open(tmp_path / "s").clip_ids("test") == ("new",)


def test_arrays_are_copied_when_added(tmp_path: Path) -> None:
    reused = features()
    with writer(tmp_path / "s", dtype="float32") as w:
        w.add("c", 0, "test", 0, reused)
        expected = reused["rgb"]["layer3"].copy()
        reused["rgb"]["layer3"][:] = 0.0
    got = FeatureStore.open(tmp_path / "s").layer_array("rgb", "layer3", "test")
    np.testing.assert_array_equal(got[0], expected)


@pytest.mark.parametrize("change, expected", [
    (dict(shapes={"rgb": {"layer3": [3, 2, 3]}}), "four positive integers"),
    (dict(shapes={"rgb": {"layer3": [3, 0, 3, 3]}}), "four positive integers"),
    (dict(shapes={"rgb": SHAPES["rgb"], "flow": {"layer3": [2, 2, 3, 3]}}),
     "shapes\\['flow'\\] has layers \\['layer3'\\]"),
    (dict(modalities=["rgb", "pose"]), "shapes has modalities"),
    (dict(shapes={"rgb.x": SHAPES["rgb"]}), "contain no '.'"),
    (dict(classes=["a", "a"]), "classes has duplicates: a"),
    (dict(classes=[]), "classes"),
    (dict(n_train_views=0), "n_train_views"),
    (dict(dtype="int8"), "dtype"),
    (dict(name=""), "name"),
    (dict(shapes={"rgb": SHAPES["rgb"], "flow": {"layer3": [2, 4, 3, 3],
                                                 "layer4": [4, 1, 2, 2]}}),
     "layer3 T, H, W differ between modalities \\(rgb \\[2, 3, 3\\], flow \\[4, 3, 3\\]\\)"),
])
def test_invalid_store_descriptions_are_refused(tmp_path: Path, change: dict,
                                                expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected) as err:
        writer(tmp_path / "s", **change)
    assert str(tmp_path / "s") in str(err.value)
