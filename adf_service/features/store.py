"""FeatureStore: read a feature store, memory-mapped and zero-copy.

``FeatureStore.open(path)`` validates the whole store once (manifest, Arrow schema, rows per
split and view) and builds, per split, a row index ``[n_views, n_clips]`` in a fixed clip
order (sorted by ``clip_id``). Tensors are numpy views on the memory-mapped Arrow buffers;
only the rows a caller gathers are copied.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from adf_service.features.manifest import (
    FEATURES_FILE,
    FeatureStoreError,
    Manifest,
    column_name,
    expected_schema,
    load_manifest,
)

__all__ = ["FeatureStore"]

_ARROW_MAGIC = b"ARROW1"


@dataclass(frozen=True)
class _SplitIndex:
    """Where a split's clips live in ``features.arrow``."""

    clip_ids: tuple[str, ...]  # sorted; the split's clip order
    labels: np.ndarray  # int64 [n_clips]
    rows: np.ndarray  # int64 [n_views, n_clips]: row of (view, clip) in the Arrow table


@dataclass(frozen=True)
class _ColumnChunks:
    """A tensor column as numpy views, one per Arrow record batch."""

    arrays: tuple[np.ndarray, ...]  # each [rows_in_batch, C, T, H, W], read-only, zero-copy
    offsets: np.ndarray  # int64 [n_batches + 1]: first row of each batch, then the row count


class FeatureStore:
    """A finished, validated feature store; build one with :meth:`open`."""

    def __init__(self, path: Path, manifest: Manifest, table: pa.Table,
                 splits: dict[str, _SplitIndex]) -> None:
        self.path = path
        self.manifest = manifest
        self._table = table
        self._splits = splits
        self._chunks: dict[str, _ColumnChunks] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FeatureStore:
        """Open and validate the store at ``path``.

        Raises:
            FeatureStoreError: the path is missing or not a finished store; the manifest is
            invalid; ``features.arrow`` is missing, truncated or corrupt; its columns or rows
            do not match the manifest; layer3 T, H, W differ between modalities.
        """
        path = Path(path)
        if not path.exists():
            raise FeatureStoreError(f"feature store {path} does not exist")
        if not path.is_dir():
            raise FeatureStoreError(f"feature store {path} is not a directory")
        manifest = load_manifest(path)
        mismatch = manifest.fusion_layer_mismatch()
        if mismatch:
            raise FeatureStoreError(f"store {path}: {mismatch}")
        if not manifest.splits:
            raise FeatureStoreError(f"store {path}: the manifest lists no splits (no clips)")
        table = _read_table(path / FEATURES_FILE)
        _check_columns(path, manifest, table)
        return cls(path, manifest, table, _index_splits(path, manifest, table))

    def __repr__(self) -> str:
        splits = ", ".join(f"{s} {n}" for s, n in self.manifest.splits.items())
        return (f"FeatureStore({str(self.path)!r}, modalities={list(self.modalities)}, "
                f"layers={list(self.layers)}, classes={self.n_classes}, splits: {splits})")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the manifest's order, e.g. ``("rgb", "flow", "pose")``."""
        return tuple(self.manifest.modalities)

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, e.g. ``("layer3", "layer4")``."""
        return tuple(self.manifest.layers)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; label ``i`` is ``classes[i]``."""
        return tuple(self.manifest.classes)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.manifest.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        """Names of the splits that have clips."""
        return tuple(self.manifest.splits)

    def clip_count(self, split: str) -> int:
        """Number of clips in ``split`` (not rows: a train clip has several views)."""
        return len(self._split(split).clip_ids)

    def n_views(self, split: str) -> int:
        """Views per clip in ``split``: ``n_train_views`` for train, 1 otherwise."""
        return int(self._split(split).rows.shape[0])

    def clip_ids(self, split: str) -> tuple[str, ...]:
        """The split's clip ids, in the split's clip order (sorted)."""
        return self._split(split).clip_ids

    def labels(self, split: str) -> np.ndarray:
        """Labels, int64 ``[n_clips]``, in the split's clip order."""
        return self._split(split).labels.copy()

    def row_index(self, split: str) -> np.ndarray:
        """Rows of the Arrow table, int64 ``[n_views, n_clips]``, clips in the split's order."""
        return self._split(split).rows.copy()

    def layer_shape(self, modality: str, layer: str) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of one clip's ``modality``/``layer`` tensor."""
        self._check_modalities((modality,))
        self._check_layer(layer)
        return self.manifest.shape(modality, layer)

    def layer_array(self, modality: str, layer: str, split: str, view: int = 0) -> np.ndarray:
        """All clips of ``split`` at ``view``: ``[n_clips, C, T, H, W]`` (float16/32).

        A zero-copy, read-only view on the memory map when the rows are stored contiguously in
        clip order within one record batch (as the synthetic generator writes them); a copy
        gathered from the memory map otherwise.
        """
        index = self._split(split)
        if not 0 <= view < index.rows.shape[0]:
            raise FeatureStoreError(
                f"store {self.path}: split {split!r} has views 0..{index.rows.shape[0] - 1}; "
                f"asked for view {view}")
        self.layer_shape(modality, layer)
        rows = index.rows[view]
        chunks = self._column(modality, layer)
        first = int(rows[0])
        batch = int(np.searchsorted(chunks.offsets, first, side="right")) - 1
        contiguous = bool(np.all(rows == np.arange(first, first + len(rows))))
        if contiguous and first + len(rows) <= chunks.offsets[batch + 1]:
            start = first - int(chunks.offsets[batch])
            return chunks.arrays[batch][start:start + len(rows)]
        return self.gather(modality, layer, rows)

    def gather(self, modality: str, layer: str, rows: np.ndarray) -> np.ndarray:
        """Copy rows of the Arrow table: ``[len(rows), C, T, H, W]`` in the order of ``rows``.

        Args:
            rows: int ``[n]`` rows (from :meth:`row_index`); sorted rows read the memory map
                sequentially and avoid one copy.
        """
        self.layer_shape(modality, layer)
        chunks = self._column(modality, layer)
        rows = np.asarray(rows, dtype=np.int64)
        n_rows = int(chunks.offsets[-1])
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n_rows)):
            raise FeatureStoreError(
                f"store {self.path}: rows must be 1-D in [0, {n_rows}); got shape "
                f"{rows.shape}, range [{rows.min(initial=0)}, {rows.max(initial=0)}]")
        order = None
        if rows.size > 1 and np.any(rows[1:] < rows[:-1]):
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
        shape = self.manifest.shape(modality, layer)
        out = np.empty((len(rows), *shape), dtype=self.manifest.numpy_dtype)
        bounds = np.searchsorted(rows, chunks.offsets)  # rows of batch b: bounds[b]:bounds[b+1]
        for b, array in enumerate(chunks.arrays):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            if hi > lo:
                # mode="clip" lets numpy write straight into out (rows are checked above)
                np.take(array, rows[lo:hi] - chunks.offsets[b], axis=0, out=out[lo:hi],
                        mode="clip")
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def _split(self, split: str) -> _SplitIndex:
        index = self._splits.get(split)
        if index is None:
            listed = ", ".join(f"{s} ({n} clips)" for s, n in self.manifest.splits.items())
            raise FeatureStoreError(
                f"store {self.path} has no clips in split {split!r}; it has {listed}")
        return index

    def _check_modalities(self, modalities: tuple[str, ...]) -> None:
        missing = [m for m in modalities if m not in self.manifest.modalities]
        if missing:
            raise FeatureStoreError(
                f"store {self.path} has modalities {', '.join(self.modalities)}; "
                f"asked for {', '.join(missing)}")

    def _check_layer(self, layer: str) -> None:
        if layer not in self.manifest.layers:
            raise FeatureStoreError(
                f"store {self.path} has layers {', '.join(self.layers)}; asked for {layer!r}")

    def _column(self, modality: str, layer: str) -> _ColumnChunks:
        name = column_name(modality, layer)
        cached = self._chunks.get(name)
        if cached is None:
            shape = self.manifest.shape(modality, layer)
            arrays = tuple(
                chunk.flatten().to_numpy(zero_copy_only=True).reshape(len(chunk), *shape)
                for chunk in self._table.column(name).chunks)
            sizes = [len(a) for a in arrays]
            offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
            cached = self._chunks[name] = _ColumnChunks(arrays, offsets)
        return cached


def _read_table(features_path: Path) -> pa.Table:
    """Memory-map ``features.arrow`` and read it as a zero-copy table."""
    if not features_path.is_file():
        raise FeatureStoreError(f"{features_path} is missing: the store has a manifest but no "
                                "features")
    try:
        with features_path.open("rb") as f:
            magic = f.read(len(_ARROW_MAGIC))
        if magic != _ARROW_MAGIC:  # pyarrow reads the footer only and would not notice
            raise pa.ArrowInvalid(f"starts with {magic!r}, not the Arrow file magic")
        source = pa.memory_map(str(features_path), "r")
        table = pa.ipc.open_file(source).read_all()
        table.validate()
    except (pa.ArrowException, OSError) as err:
        size = features_path.stat().st_size
        raise FeatureStoreError(
            f"{features_path} ({size} bytes) is truncated or corrupt, not a readable Arrow IPC "
            f"file: {err}") from err
    return table


def _check_columns(path: Path, manifest: Manifest, table: pa.Table) -> None:
    """The table's schema is the one the manifest implies, and no value is null."""
    expected = expected_schema(manifest)
    got = {f.name: f.type for f in table.schema}
    want = {f.name: f.type for f in expected}
    problems = []
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    problems += [f"column {n!r} is {got[n]}, expected {t}"
                 for n, t in want.items() if n in got and got[n] != t]
    problems += [f"column {n!r} has {table.column(n).null_count} nulls"
                 for n in want if n in got and table.column(n).null_count]
    if problems:
        raise FeatureStoreError(
            f"store {path}: {FEATURES_FILE} does not match the manifest: {'; '.join(problems)}")


def _index_splits(path: Path, manifest: Manifest, table: pa.Table) -> dict[str, _SplitIndex]:
    """Group rows by split, clip and view, checking every split is complete and consistent."""
    clip = np.asarray(table.column("clip_id").to_numpy(zero_copy_only=False), dtype=object)
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False), dtype=object)
    view = table.column("view").to_numpy().astype(np.int64)
    label = table.column("label").to_numpy().astype(np.int64)
    where = f"store {path}"
    found = {str(s): int(n) for s, n in zip(*np.unique(split, return_counts=True))}
    if set(found) != set(manifest.splits):
        raise FeatureStoreError(
            f"{where}: manifest lists splits {sorted(manifest.splits)}, "
            f"{FEATURES_FILE} has rows of {sorted(found)}")
    bad = np.flatnonzero((label < 0) | (label >= len(manifest.classes)))
    if bad.size:
        raise FeatureStoreError(
            f"{where}: clip {clip[bad[0]]!r} has label {label[bad[0]]}, "
            f"not in [0, {len(manifest.classes)})")
    index: dict[str, _SplitIndex] = {}
    for name, n_clips in manifest.splits.items():
        rows = np.flatnonzero(split == name)
        ids, clip_of_row = np.unique(clip[rows], return_inverse=True)
        if len(ids) != n_clips:
            raise FeatureStoreError(
                f"{where}: manifest says split {name!r} has {n_clips} clips, "
                f"{FEATURES_FILE} has {len(ids)}")
        n_views = manifest.n_views(name)
        views = view[rows]
        bad = np.flatnonzero((views < 0) | (views >= n_views))
        if bad.size:
            raise FeatureStoreError(
                f"{where}: clip {ids[clip_of_row[bad[0]]]!r} of split {name!r} has view "
                f"{views[bad[0]]}, expected 0..{n_views - 1}")
        table_rows = np.full((n_views, n_clips), -1, dtype=np.int64)
        table_rows[views, clip_of_row] = rows
        if len(rows) != n_views * n_clips or np.any(table_rows < 0):
            lacking = np.argwhere(table_rows < 0)
            detail = (f"clip {ids[lacking[0][1]]!r} lacks view {lacking[0][0]}"
                      if lacking.size else "some (clip, view) rows are duplicated")
            raise FeatureStoreError(
                f"{where}: split {name!r} should have {n_views} view(s) of each of its "
                f"{n_clips} clips ({n_views * n_clips} rows), has {len(rows)} rows: {detail}")
        labels = label[table_rows[0]]
        differs = np.flatnonzero(np.any(label[table_rows] != labels, axis=0))
        if differs.size:
            raise FeatureStoreError(
                f"{where}: clip {ids[differs[0]]!r} has different labels in different views")
        index[name] = _SplitIndex(tuple(str(i) for i in ids), labels, table_rows)
    counts = Counter(i for s in index.values() for i in s.clip_ids)
    if len(counts) != sum(manifest.splits.values()):
        shared = sorted(i for i, n in counts.items() if n > 1)[:3]
        raise FeatureStoreError(f"{where}: clips {shared} appear in more than one split")
    return index
