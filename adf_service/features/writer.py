"""FeatureStoreWriter: build a feature store clip view by clip view.

Rows are validated as they are added, buffered, and written as Arrow record batches to
``features.arrow.tmp``. ``close()`` checks that every train clip has all its views, renames
the feature file into place and writes ``manifest.json`` last (atomically), so a directory
without a manifest is an unfinished store and the reader says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from adf_service.features.manifest import (
    FEATURES_FILE,
    MANIFEST_FILE,
    TRAIN_SPLIT,
    FeatureStoreError,
    Manifest,
    column_name,
    expected_schema,
    validation_summary,
    write_manifest,
)

__all__ = ["FeatureStoreWriter"]

_BATCH_BYTES = 64 * 2**20  # a record batch of about 64 MiB: bounded memory, few batches


class _Clip:
    """What the writer remembers of a clip to check consistency across its views."""

    __slots__ = ("label", "split", "views")

    def __init__(self, label: int, split: str) -> None:
        self.label = label
        self.split = split
        self.views: set[int] = set()


class FeatureStoreWriter:
    """Write a feature store at ``path`` (a directory, created if needed).

    Example::

        with FeatureStoreWriter(out, name="hmdb51-split1", shapes={
                "rgb": {"layer3": [1024, 8, 7, 7], "layer4": [2048, 4, 4, 4]},
                "flow": {"layer3": [1024, 8, 7, 7], "layer4": [2048, 4, 4, 4]}},
                classes=class_names, n_train_views=2,
                provenance={"extractor": "adf_service.extract", "seed": 0}) as writer:
            writer.add("brush_hair_1", label=0, split="train", view=0,
                       features={"rgb": {"layer3": a, "layer4": b}, "flow": {...}})

    Args:
        path: the store directory; must not hold a finished store unless ``overwrite``.
        name: the store's name (e.g. dataset and split file).
        shapes: ``{modality: {layer: [C, T, H, W]}}``; its key order is the modalities' and
            layers' order unless ``modalities`` / ``layers`` say otherwise.
        classes: class names; label ``i`` is ``classes[i]``.
        n_train_views: views per train clip (differently sampled frames of the clip).
        dtype: storage dtype, ``"float16"`` or ``"float32"``; inputs are cast to it.
        provenance: how the features were made (generator, parameters, seed, code version).
        modalities, layers: explicit orders (must name exactly the keys of ``shapes``).
        rows_per_batch: rows per record batch; default: about 64 MiB per batch.
        overwrite: replace a finished store at ``path``.

    Raises:
        FeatureStoreError: an invalid manifest, or ``path`` already holds a store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        shapes: Mapping[str, Mapping[str, Sequence[int]]],
        classes: Sequence[str],
        n_train_views: int,
        dtype: Literal["float16", "float32"] = "float16",
        provenance: Mapping[str, Any] | None = None,
        modalities: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        rows_per_batch: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        first = next(iter(shapes.values()), {})
        try:
            self.manifest = Manifest(
                name=name,
                modalities=list(modalities if modalities is not None else shapes),
                layers=list(layers if layers is not None else first),
                shapes={m: {l: list(s) for l, s in per.items()} for m, per in shapes.items()},
                classes=list(classes),
                n_train_views=n_train_views,
                dtype=dtype,
                provenance=dict(provenance or {}),
            )
        except ValidationError as err:
            raise FeatureStoreError(
                f"{self.path}: invalid store description: {validation_summary(err)}") from err
        mismatch = self.manifest.fusion_layer_mismatch()
        if mismatch:
            raise FeatureStoreError(f"{self.path}: {mismatch}")
        if rows_per_batch is not None and rows_per_batch < 1:
            raise FeatureStoreError(f"{self.path}: rows_per_batch={rows_per_batch} must be >= 1")
        if (self.path / MANIFEST_FILE).exists():
            if not overwrite:
                raise FeatureStoreError(
                    f"{self.path} already holds a feature store; pass overwrite=True to replace it")
            (self.path / MANIFEST_FILE).unlink()  # from here on the old store reads as unfinished
        self.path.mkdir(parents=True, exist_ok=True)

        self._schema = expected_schema(self.manifest)
        self._tensor_columns = [(m, l, column_name(m, l)) for m in self.manifest.modalities
                                for l in self.manifest.layers]
        row_bytes = sum(math.prod(self.manifest.shape(m, l)) for m, l, _ in self._tensor_columns)
        row_bytes *= np.dtype(self.manifest.numpy_dtype).itemsize
        self._rows_per_batch = rows_per_batch or max(1, _BATCH_BYTES // row_bytes)
        self._tmp_path = self.path / (FEATURES_FILE + ".tmp")
        self._sink = pa.OSFile(str(self._tmp_path), "wb")
        self._ipc = pa.ipc.new_file(self._sink, self._schema)
        self._buffer: list[tuple[str, int, str, int, list[np.ndarray]]] = []
        self._clips: dict[str, _Clip] = {}
        self._closed = False

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, clip_id: str, label: int, split: str, view: int,
            features: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Add one view of one clip.

        Args:
            clip_id: the clip's identity, shared by its views.
            label: class index in ``[0, len(classes))``, the same for every view.
            split: e.g. ``"train"`` or ``"test"``; a clip belongs to one split.
            view: ``0 .. n_train_views-1`` for train clips, ``0`` otherwise.
            features: ``{modality: {layer: array [C, T, H, W]}}`` for every modality and
                layer of the manifest; floating arrays, cast to the store's dtype.

        Raises:
            FeatureStoreError: naming the clip (and modality/layer) on any mismatch.
        """
        self._check_open()
        label, view = int(label), int(view)  # numpy integers welcome
        where = f"{self.path}: clip {clip_id!r} view {view}"
        self._check_row(clip_id, label, split, view, where)
        if set(features) != set(self.manifest.modalities):
            raise FeatureStoreError(
                f"{where}: features have modalities {sorted(features)}, "
                f"expected {self.manifest.modalities}")
        tensors = []
        for modality, layer, _ in self._tensor_columns:
            per_layer = features[modality]
            if layer not in per_layer:
                raise FeatureStoreError(
                    f"{where}: modality {modality!r} lacks layer {layer!r} "
                    f"(has {sorted(per_layer)})")
            tensors.append(self._checked_tensor(np.asarray(per_layer[layer]), modality, layer,
                                                where))
        clip = self._clips.setdefault(clip_id, _Clip(label, split))
        clip.views.add(view)
        self._buffer.append((clip_id, label, split, view, tensors))
        if len(self._buffer) >= self._rows_per_batch:
            self.flush()

    def close(self) -> Manifest:
        """Finish the store: write buffered rows, check views, then the manifest (last).

        Returns:
            the final manifest, with ``splits`` counted from the added clips.

        Raises:
            FeatureStoreError: no rows, or a train clip lacks views (the store stays
            unfinished: no manifest is written).
        """
        self._check_open()
        try:
            self.flush()
            if not self._clips:
                raise FeatureStoreError(f"{self.path}: no clips were added")
            n_views = self.manifest.n_train_views
            for clip_id, clip in self._clips.items():
                if clip.split == TRAIN_SPLIT and len(clip.views) != n_views:
                    missing = sorted(set(range(n_views)) - clip.views)
                    raise FeatureStoreError(
                        f"{self.path}: train clip {clip_id!r} lacks views {missing} "
                        f"(n_train_views={n_views})")
        except BaseException:
            self.abort()
            raise
        self._ipc.close()
        self._sink.close()
        self._closed = True
        os.replace(self._tmp_path, self.path / FEATURES_FILE)
        counts: dict[str, int] = {}
        for clip in self._clips.values():
            counts[clip.split] = counts.get(clip.split, 0) + 1
        self.manifest = self.manifest.model_copy(update={"splits": dict(sorted(counts.items()))})
        write_manifest(self.path, self.manifest)
        return self.manifest

    def abort(self) -> None:
        """Stop without finishing: remove the partial feature file; no manifest is written."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ipc.close()
        except (pa.ArrowException, OSError):
            pass  # a broken writer still must not leave a half store that looks finished
        self._sink.close()
        self._tmp_path.unlink(missing_ok=True)

    def _check_open(self) -> None:
        if self._closed:
            raise FeatureStoreError(f"{self.path}: the writer is closed")

    def _check_row(self, clip_id: str, label: int, split: str, view: int, where: str) -> None:
        if not isinstance(clip_id, str) or not clip_id:
            raise FeatureStoreError(f"{self.path}: clip_id {clip_id!r} must be a non-empty string")
        if not isinstance(split, str) or not split:
            raise FeatureStoreError(f"{where}: split {split!r} must be a non-empty string")
        n_classes = len(self.manifest.classes)
        if not 0 <= label < n_classes:
            raise FeatureStoreError(f"{where}: label {label} not in [0, {n_classes})")
        n_views = self.manifest.n_views(split)
        if not 0 <= view < n_views:
            raise FeatureStoreError(
                f"{where}: view {view} not in [0, {n_views}) for split {split!r}")
        clip = self._clips.get(clip_id)
        if clip is None:
            return
        if clip.split != split:
            raise FeatureStoreError(
                f"{where}: split {split!r}, but an earlier view is in split {clip.split!r}")
        if clip.label != label:
            raise FeatureStoreError(
                f"{where}: label {label}, but an earlier view has label {clip.label}")
        if view in clip.views:
            raise FeatureStoreError(f"{where}: this view was already added")

    def _checked_tensor(self, array: np.ndarray, modality: str, layer: str,
                        where: str) -> np.ndarray:
        expected = self.manifest.shape(modality, layer)
        if array.shape != expected:
            raise FeatureStoreError(
                f"{where}: {modality}.{layer} has shape {list(array.shape)}, "
                f"expected [C, T, H, W] = {list(expected)}")
        if not np.issubdtype(array.dtype, np.floating):
            raise FeatureStoreError(
                f"{where}: {modality}.{layer} has dtype {array.dtype}, expected a float dtype "
                f"(stored as {self.manifest.dtype})")
        with np.errstate(over="ignore"):  # overflow to inf is reported below, with the clip
            # a copy: callers may reuse their arrays before the buffer is flushed
            stored = array.astype(self.manifest.numpy_dtype, order="C", copy=True).reshape(-1)
        if not np.isfinite(stored).all():
            raise FeatureStoreError(
                f"{where}: {modality}.{layer} has non-finite values as {self.manifest.dtype} "
                "(NaN, or beyond the dtype's range)")
        return stored

    def flush(self) -> None:
        """Write the buffered rows as one record batch (``add`` does this every
        ``rows_per_batch`` rows); a producer may call it to end a batch at a boundary of its
        own, e.g. after each (split, view), so readers get zero-copy per-view arrays."""
        self._check_open()
        if not self._buffer:
            return
        rows = self._buffer
        self._buffer = []
        columns: list[pa.Array] = [
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([r[1] for r in rows], pa.int32()),
            pa.array([r[2] for r in rows], pa.string()),
            pa.array([r[3] for r in rows], pa.int16()),
        ]
        for i, (_, _, name) in enumerate(self._tensor_columns):
            values = pa.array(np.concatenate([r[4][i] for r in rows]))
            columns.append(pa.FixedSizeListArray.from_arrays(
                values, self._schema.field(name).type.list_size))
        self._ipc.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))
