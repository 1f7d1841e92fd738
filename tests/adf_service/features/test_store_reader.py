"""FeatureStore.open: round trips, zero-copy reads, and errors that name the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from adf_service.features import FeatureStore, FeatureStoreError


def test_store_round_trips_every_tensor(tiny_store) -> None:
    store = FeatureStore.open(tiny_store.path)
    for split, clips in tiny_store.splits.items():
        assert store.clip_ids(split) == tuple(clips)
        assert store.clip_count(split) == len(clips)
        np.testing.assert_array_equal(store.labels(split),
                                      [tiny_store.labels[c] for c in clips])
        assert store.labels(split).dtype == np.int64
        for view in range(store.n_views(split)):
            for modality in store.modalities:
                for layer in store.layers:
                    got = store.layer_array(modality, layer, split, view)
                    expected = np.stack([tiny_store.values[(c, view)][modality][layer]
                                         for c in clips])
                    assert got.dtype == np.float16
                    assert got.shape == (len(clips), *store.layer_shape(modality, layer))
                    np.testing.assert_array_equal(got, expected)


def test_store_describes_itself_from_the_manifest(tiny_store) -> None:
    store = FeatureStore.open(tiny_store.path)
    assert store.modalities == ("rgb", "flow", "pose")
    assert store.layers == ("layer3", "layer4")
    assert store.classes == ("brush_hair", "cartwheel", "catch") and store.n_classes == 3
    assert store.manifest.splits == {"test": 3, "train": 5}
    assert store.n_views("train") == 2 and store.n_views("test") == 1
    assert store.manifest.provenance == {"generator": "tests", "seed": 0}
    assert store.layer_shape("flow", "layer4") == (4, 1, 2, 2)
    assert "tiny" in repr(store)


def test_float32_stores_read_back_float32(make_tiny_store) -> None:
    written = make_tiny_store(dtype="float32")
    got = FeatureStore.open(written.path).layer_array("pose", "layer3", "test")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0], written.values[("test_clip_0", 0)]["pose"]["layer3"])


def test_layer_array_is_a_zero_copy_view_when_rows_are_contiguous(make_tiny_store) -> None:
    written = make_tiny_store(shuffle_rows=False, rows_per_batch=None)  # one record batch
    store = FeatureStore.open(written.path)
    first_view = store.layer_array("rgb", "layer3", "test")
    assert not first_view.flags.owndata and not first_view.flags.writeable
    np.testing.assert_array_equal(first_view[2],
                                  written.values[("test_clip_2", 0)]["rgb"]["layer3"])


def test_gather_returns_rows_in_the_order_asked_across_record_batches(tiny_store) -> None:
    store = FeatureStore.open(tiny_store.path)
    rows = store.row_index("train")[:, ::-1].reshape(-1)  # unsorted, over several batches
    got = store.gather("flow", "layer4", rows)
    clips = tiny_store.splits["train"][::-1]
    expected = [tiny_store.values[(c, v)]["flow"]["layer4"] for v in (0, 1) for c in clips]
    np.testing.assert_array_equal(got, np.stack(expected))
    with pytest.raises(FeatureStoreError, match="rows must be 1-D in \\[0, 13\\)"):
        store.gather("flow", "layer4", np.array([0, 13]))


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match=f"feature store {tmp_path / 'nope'} does not"):
        FeatureStore.open(tmp_path / "nope")


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FeatureStoreError, match="is not a directory"):
        FeatureStore.open(tmp_path / "file")


def test_a_directory_without_manifest_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match=f"{tmp_path} is not a feature store: "
                                                "manifest.json is missing$"):
        FeatureStore.open(tmp_path)


def test_a_manifest_that_is_not_json_is_named(tiny_store) -> None:
    (tiny_store.path / "manifest.json").write_text("{not json")
    with pytest.raises(FeatureStoreError, match="manifest.json: cannot read the manifest"):
        FeatureStore.open(tiny_store.path)


@pytest.mark.parametrize("field, value, expected", [
    ("format_version", 2, "format_version"),
    ("n_train_views", 0, "n_train_views"),
    ("dtype", "bfloat16", "dtype"),
    ("splits", {"train": 0}, "a split needs a name and clips"),
    ("surprise", 1, "surprise"),
])
def test_an_invalid_manifest_names_the_field(tiny_store, field: str, value: object,
                                             expected: str) -> None:
    path = tiny_store.path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[field] = value
    path.write_text(json.dumps(manifest))
    with pytest.raises(FeatureStoreError, match=f"manifest.json: invalid manifest.*{expected}"):
        FeatureStore.open(tiny_store.path)


def test_a_missing_feature_file_is_named(tiny_store) -> None:
    (tiny_store.path / "features.arrow").unlink()
    with pytest.raises(FeatureStoreError, match="features.arrow is missing"):
        FeatureStore.open(tiny_store.path)


@pytest.mark.parametrize("keep", [0, 6, 0.5, -1])
def test_truncated_feature_file_names_the_file(tiny_store, keep: float) -> None:
    path = tiny_store.path / "features.arrow"
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(FeatureStoreError,
                       match=f"{path} \\({cut} bytes\\) is truncated or corrupt"):
        FeatureStore.open(tiny_store.path)


@pytest.mark.parametrize("where", ["magic", "footer"])
def test_corrupt_feature_file_names_the_file(tiny_store, where: str) -> None:
    path = tiny_store.path / "features.arrow"
    data = bytearray(path.read_bytes())
    start = 0 if where == "magic" else len(data) - 64
    data[start:start + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    with pytest.raises(FeatureStoreError, match=f"{path} .* is truncated or corrupt"):
        FeatureStore.open(tiny_store.path)


def test_columns_not_matching_the_manifest_are_listed(tiny_store) -> None:
    path = tiny_store.path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shapes"]["rgb"]["layer4"] = [5, 1, 2, 2]
    manifest["modalities"] = ["rgb", "flow"]
    del manifest["shapes"]["pose"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(FeatureStoreError, match="does not match the manifest") as err:
        FeatureStore.open(tiny_store.path)
    assert "unexpected columns ['pose.layer3', 'pose.layer4']" in str(err.value)
    assert "column 'rgb.layer4' is fixed_size_list<item: halffloat>[24], expected " \
           "fixed_size_list<item: halffloat>[20]" in str(err.value)


def test_asking_for_a_missing_modality_names_the_stores_modalities(
        make_raw_store: Callable[..., Path]) -> None:
    shapes = {"rgb": {"layer3": [3, 2, 3, 3]}, "flow": {"layer3": [2, 2, 3, 3]}}
    path = make_raw_store([("a", 0, "test", 0)], modalities=["rgb", "flow"], layers=["layer3"],
                          shapes=shapes, splits={"test": 1})
    store = FeatureStore.open(path)
    with pytest.raises(FeatureStoreError,
                       match=f"store {path} has modalities rgb, flow; asked for pose"):
        store.layer_array("pose", "layer3", "test")
    with pytest.raises(FeatureStoreError, match="has layers layer3; asked for 'layer4'"):
        store.layer_array("rgb", "layer4", "test")


def test_an_empty_split_is_an_error(tiny_store) -> None:
    store = FeatureStore.open(tiny_store.path)
    with pytest.raises(FeatureStoreError, match="has no clips in split 'val'; it has "
                                                "test \\(3 clips\\), train \\(5 clips\\)"):
        store.labels("val")
    with pytest.raises(FeatureStoreError, match="split 'test' has views 0..0; asked for view 1"):
        store.layer_array("rgb", "layer3", "test", view=1)


def test_layer3_spatial_shapes_must_agree_across_modalities(
        make_raw_store: Callable[..., Path]) -> None:
    shapes = {"rgb": {"layer3": [3, 2, 3, 3]}, "pose": {"layer3": [1, 4, 3, 3]}}
    path = make_raw_store([("a", 0, "test", 0)], modalities=["rgb", "pose"], layers=["layer3"],
                          shapes=shapes, splits={"test": 1})
    with pytest.raises(FeatureStoreError, match="layer3 T, H, W differ between modalities "
                                                "\\(rgb \\[2, 3, 3\\], pose \\[4, 3, 3\\]\\)"):
        FeatureStore.open(path)


def test_a_train_split_missing_views_is_refused(make_raw_store: Callable[..., Path]) -> None:
    rows = [("a", 0, "train", 0), ("a", 0, "train", 1), ("b", 1, "train", 0),
            ("t", 2, "test", 0)]
    path = make_raw_store(rows, splits={"train": 2, "test": 1})
    with pytest.raises(FeatureStoreError, match="split 'train' should have 2 view\\(s\\) of each "
                                                "of its 2 clips \\(4 rows\\), has 3 rows: "
                                                "clip 'b' lacks view 1"):
        FeatureStore.open(path)


@pytest.mark.parametrize("rows, splits, expected", [
    ([("a", 0, "test", 0)], {"test": 2}, "manifest says split 'test' has 2 clips, "
                                          "features.arrow has 1"),
    ([("a", 0, "test", 0)], {"val": 1}, "manifest lists splits \\['val'\\], features.arrow "
                                        "has rows of \\['test'\\]"),
    ([("a", 0, "test", 0), ("a", 0, "test", 0)], {"test": 1}, "some \\(clip, view\\) rows "
                                                              "are duplicated"),
    ([("a", 0, "test", 1)], {"test": 1}, "clip 'a' of split 'test' has view 1, expected 0..0"),
    ([("a", 7, "test", 0)], {"test": 1}, "clip 'a' has label 7, not in \\[0, 3\\)"),
    ([("a", 0, "train", 0), ("a", 1, "train", 1)], {"train": 1},
     "clip 'a' has different labels in different views"),
    ([("a", 0, "test", 0), ("a", 0, "val", 0)], {"test": 1, "val": 1},
     "clips \\['a'\\] appear in more than one split"),
])
def test_rows_inconsistent_with_the_manifest_are_refused(
        make_raw_store: Callable[..., Path], rows: list, splits: dict, expected: str) -> None:
    with pytest.raises(FeatureStoreError, match=expected):
        FeatureStore.open(make_raw_store(rows, splits=splits))
