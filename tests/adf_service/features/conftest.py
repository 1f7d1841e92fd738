"""Small feature stores built in code, for the store, ClipSet and synthetic-data tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from adf_service.features import FeatureStoreWriter, Manifest
from adf_service.features.manifest import expected_schema

# rgb 3, flow 2, pose 1 channels; layer3 2x3x3 for all; layer4 coarser, per modality
SHAPES: dict[str, dict[str, list[int]]] = {
    "rgb": {"layer3": [3, 2, 3, 3], "layer4": [6, 1, 2, 2]},
    "flow": {"layer3": [2, 2, 3, 3], "layer4": [4, 1, 2, 2]},
    "pose": {"layer3": [1, 2, 3, 3], "layer4": [2, 1, 2, 2]},
}
CLASSES = ["brush_hair", "cartwheel", "catch"]
N_TRAIN, N_TEST, N_VIEWS = 5, 3, 2

Features = dict[str, dict[str, np.ndarray]]


def tiny_features(rng: np.random.Generator, shapes: dict[str, dict[str, list[int]]] = SHAPES,
                  ) -> Features:
    """Random tensors for one clip view, exactly representable in float16."""
    return {m: {l: rng.integers(-512, 512, size=s).astype(np.float32) / 64
                for l, s in per.items()} for m, per in shapes.items()}


class TinyStore:
    """What a tiny store holds: ``values[(clip_id, view)]`` and ``labels[clip_id]``."""

    def __init__(self, path: Path, values: dict[tuple[str, int], Features],
                 labels: dict[str, int], splits: dict[str, list[str]]) -> None:
        self.path = path
        self.values = values
        self.labels = labels
        self.splits = splits  # split -> clip ids in the order they should be read (sorted)


def write_tiny_store(path: Path, *, seed: int = 0, dtype: str = "float16",
                     shapes: dict[str, dict[str, list[int]]] = SHAPES,
                     rows_per_batch: int | None = 4, shuffle_rows: bool = True) -> TinyStore:
    """Write 5 train clips x 2 views and 3 test clips, rows in a shuffled order."""
    rng = np.random.default_rng(seed)
    train = [f"train_clip_{i}" for i in range(N_TRAIN)]
    test = [f"test_clip_{i}" for i in range(N_TEST)]
    labels = {c: int(rng.integers(0, len(CLASSES))) for c in train + test}
    rows = [(c, "train", v) for c in train for v in range(N_VIEWS)] + [(c, "test", 0)
                                                                       for c in test]
    if shuffle_rows:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    values: dict[tuple[str, int], Features] = {}
    with FeatureStoreWriter(path, name="tiny", shapes=shapes, classes=CLASSES,
                            n_train_views=N_VIEWS, dtype=dtype,  # type: ignore[arg-type]
                            provenance={"generator": "tests", "seed": seed},
                            rows_per_batch=rows_per_batch) as writer:
        for clip, split, view in rows:
            values[(clip, view)] = tiny_features(rng, shapes)
            writer.add(clip, labels[clip], split, view, values[(clip, view)])
    return TinyStore(path, values, labels, {"train": sorted(train), "test": sorted(test)})


def write_raw_store(path: Path, manifest: dict[str, Any],
                    rows: list[tuple[str, int, str, int]], seed: int = 0) -> None:
    """Write manifest.json and features.arrow by hand, bypassing the writer's checks."""
    path.mkdir(parents=True, exist_ok=True)
    model = Manifest.model_validate(manifest)
    schema = expected_schema(model)
    rng = np.random.default_rng(seed)
    columns: list[pa.Array] = [
        pa.array([r[0] for r in rows], pa.string()),
        pa.array([r[1] for r in rows], pa.int32()),
        pa.array([r[2] for r in rows], pa.string()),
        pa.array([r[3] for r in rows], pa.int16()),
    ]
    for field in list(schema)[4:]:
        size = field.type.list_size
        values = rng.standard_normal(size * len(rows)).astype(model.numpy_dtype)
        columns.append(pa.FixedSizeListArray.from_arrays(pa.array(values), size))
    with pa.OSFile(str(path / "features.arrow"), "wb") as sink, \
            pa.ipc.new_file(sink, schema) as ipc:
        ipc.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    (path / "manifest.json").write_text(json.dumps(manifest))


def raw_manifest(**changes: Any) -> dict[str, Any]:
    """A valid manifest dict for :func:`write_raw_store`, with ``changes`` applied."""
    manifest: dict[str, Any] = {
        "name": "raw", "modalities": list(SHAPES), "layers": ["layer3", "layer4"],
        "shapes": SHAPES, "classes": CLASSES, "splits": {"train": 1, "test": 1},
        "n_train_views": 2, "dtype": "float16", "provenance": {},
    }
    manifest.update(changes)
    return manifest


@pytest.fixture
def tiny_store(tmp_path: Path) -> TinyStore:
    """A tiny float16 store written in shuffled order over several record batches."""
    return write_tiny_store(tmp_path / "tiny")


@pytest.fixture
def make_tiny_store(tmp_path: Path) -> Callable[..., TinyStore]:
    """Build tiny stores with other options: ``make_tiny_store("name", dtype=...)``."""
    def make(name: str = "store", **kwargs: Any) -> TinyStore:
        return write_tiny_store(tmp_path / name, **kwargs)
    return make


@pytest.fixture
def make_raw_store(tmp_path: Path) -> Callable[..., Path]:
    """Hand-written stores the writer would refuse:
    ``make_raw_store(rows=[(clip, label, split, view), ...], **manifest_changes)``."""
    def make(rows: list[tuple[str, int, str, int]], name: str = "raw",
             **changes: Any) -> Path:
        path = tmp_path / name
        write_raw_store(path, raw_manifest(**changes), rows)
        return path
    return make
