"""The feature store's manifest: what a store holds and how it was made.

A store is a directory with two files:

- ``features.arrow``: Arrow IPC *file* format, one row per (clip, view);
- ``manifest.json``: a :class:`Manifest`, written last, so a store without one is unfinished.

This module holds the pieces both the writer and the reader need: the manifest model, the
column layout derived from it, and :class:`FeatureStoreError`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "FORMAT_VERSION",
    "FUSION_LAYER",
    "TRAIN_SPLIT",
    "MANIFEST_FILE",
    "FEATURES_FILE",
    "FeatureStoreError",
    "Manifest",
    "column_name",
    "expected_schema",
    "load_manifest",
    "validation_summary",
    "write_manifest",
]

FORMAT_VERSION = 1
FUSION_LAYER = "layer3"  # the fusion network's input (thesis §4.1.3): same T, H, W everywhere
TRAIN_SPLIT = "train"  # the only split with several views per clip (sampling augmentation)
MANIFEST_FILE = "manifest.json"
FEATURES_FILE = "features.arrow"

_NUMPY_DTYPES: dict[str, type[np.floating]] = {"float16": np.float16, "float32": np.float32}
_ARROW_DTYPES: dict[str, pa.DataType] = {"float16": pa.float16(), "float32": pa.float32()}


class FeatureStoreError(ValueError):
    """A feature store is missing, unfinished, inconsistent, or asked for what it lacks."""


class Manifest(BaseModel):
    """Contents of ``manifest.json``.

    ``shapes[modality][layer]`` is ``[C, T, H, W]`` of one clip's tensor; label ``i`` means
    ``classes[i]``; ``splits`` maps a split name to its number of clips (filled in by the
    writer's ``close()``). Train clips have ``n_train_views`` views, other splits view 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1)
    modalities: list[str] = Field(min_length=1)
    layers: list[str] = Field(min_length=1)
    shapes: dict[str, dict[str, list[int]]]
    classes: list[str] = Field(min_length=1)
    splits: dict[str, int] = Field(default_factory=dict)
    n_train_views: int = Field(ge=1)
    dtype: Literal["float16", "float32"] = "float16"
    provenance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for field, names in (("modalities", self.modalities), ("layers", self.layers),
                             ("classes", self.classes)):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{field} has duplicates: {', '.join(duplicates)}")
            if field != "classes" and any(not n or "." in n for n in names):
                raise ValueError(f"{field} {names}: names must be non-empty and contain no '.'")
        if set(self.shapes) != set(self.modalities):
            raise ValueError(
                f"shapes has modalities {sorted(self.shapes)}, expected {self.modalities}")
        for modality, per_layer in self.shapes.items():
            if set(per_layer) != set(self.layers):
                raise ValueError(
                    f"shapes[{modality!r}] has layers {sorted(per_layer)}, expected {self.layers}")
            for layer, shape in per_layer.items():
                if len(shape) != 4 or any(d < 1 for d in shape):
                    raise ValueError(
                        f"shapes[{modality!r}][{layer!r}] = {shape}: expected [C, T, H, W], "
                        "four positive integers")
        for split, count in self.splits.items():
            if not split or count < 1:
                raise ValueError(f"splits[{split!r}] = {count}: a split needs a name and clips")
        return self

    @property
    def numpy_dtype(self) -> type[np.floating]:
        """The numpy dtype of stored tensors (``np.float16`` or ``np.float32``)."""
        return _NUMPY_DTYPES[self.dtype]

    def shape(self, modality: str, layer: str) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of one clip's ``modality``/``layer`` tensor."""
        c, t, h, w = self.shapes[modality][layer]
        return (c, t, h, w)

    def n_views(self, split: str) -> int:
        """Views per clip in ``split``: ``n_train_views`` for train, 1 otherwise."""
        return self.n_train_views if split == TRAIN_SPLIT else 1

    def fusion_layer_mismatch(self) -> str | None:
        """Why the modalities' layer3 T, H, W differ, or ``None`` when they agree (or no layer3)."""
        if FUSION_LAYER not in self.layers:
            return None
        spatial = {m: tuple(self.shapes[m][FUSION_LAYER][1:]) for m in self.modalities}
        if len(set(spatial.values())) <= 1:
            return None
        listed = ", ".join(f"{m} {list(s)}" for m, s in spatial.items())
        return (f"{FUSION_LAYER} T, H, W differ between modalities ({listed}); "
                "the fusion network concatenates them channel-wise and needs them equal")


def column_name(modality: str, layer: str) -> str:
    """Arrow column of a (modality, layer) tensor, e.g. ``"rgb.layer3"``."""
    return f"{modality}.{layer}"


def expected_schema(manifest: Manifest) -> pa.Schema:
    """The Arrow schema of ``features.arrow`` for ``manifest``.

    Tensor columns hold each clip's ``[C, T, H, W]`` tensor flattened in C order as a
    ``FixedSizeList<float16|float32>`` of ``C*T*H*W`` values.
    """
    value_type = _ARROW_DTYPES[manifest.dtype]
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("view", pa.int16(), nullable=False),
    ]
    for modality in manifest.modalities:
        for layer in manifest.layers:
            size = math.prod(manifest.shape(modality, layer))
            fields.append(pa.field(column_name(modality, layer),
                                   pa.list_(value_type, size), nullable=False))
    return pa.schema(fields)


def load_manifest(store_path: Path) -> Manifest:
    """Read and validate ``store_path/manifest.json``.

    Raises:
        FeatureStoreError: the file is missing, not JSON, or not a valid manifest.
    """
    manifest_path = store_path / MANIFEST_FILE
    if not manifest_path.is_file():
        unfinished = (store_path / FEATURES_FILE).exists() or any(store_path.glob("*.tmp"))
        hint = (" (features are present: the writer was interrupted before close())"
                if unfinished else "")
        raise FeatureStoreError(
            f"{store_path} is not a feature store: {MANIFEST_FILE} is missing{hint}")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FeatureStoreError(f"{manifest_path}: cannot read the manifest: {err}") from err
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        raise FeatureStoreError(
            f"{manifest_path}: invalid manifest: {validation_summary(err)}") from err


def validation_summary(err: ValidationError) -> str:
    """A pydantic error on one line: ``field: message; field: message``."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'manifest'}: {e['msg']}"
                     for e in err.errors())


def write_manifest(store_path: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    final = store_path / MANIFEST_FILE
    tmp = store_path / (MANIFEST_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(manifest.model_dump_json(indent=2))
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
