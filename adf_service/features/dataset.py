"""ClipSet: the clips of one split of a store, as the training loops consume them.

A ClipSet is a selection (``indices`` into a split's clip order) plus the layer and ordered
modalities to read. ``batches`` gathers each mini-batch's rows straight from the memory-mapped
store with numpy fancy indexing; there is no per-sample Python loop and no DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from adf_service.features.manifest import TRAIN_SPLIT, FeatureStoreError
from adf_service.features.store import FeatureStore

__all__ = ["ClipSet"]


@dataclass(frozen=True, eq=False)
class ClipSet:
    """Clips of one split of a store, for one layer and an ordered set of modalities."""

    store: FeatureStore
    split: str  # "train" | "test"
    layer: str  # "layer3" (fusion) | "layer4" (baselines)
    modalities: tuple[str, ...]  # e.g. ("rgb", "flow", "pose")
    indices: np.ndarray  # int64 positions into the split's clip order

    @classmethod
    def of(cls, store: FeatureStore, split: str, layer: str,
           modalities: Sequence[str] | None = None) -> ClipSet:
        """All clips of ``split``; ``modalities`` defaults to all of the store's, in its order.

        Raises:
            FeatureStoreError: unknown or empty split, unknown layer or modality, duplicate
            or no modalities.
        """
        chosen = tuple(store.modalities if modalities is None else modalities)
        if not chosen:
            raise FeatureStoreError(f"store {store.path}: a ClipSet needs at least one modality")
        if len(set(chosen)) != len(chosen):
            raise FeatureStoreError(f"store {store.path}: modalities {list(chosen)} repeat")
        for modality in chosen:
            store.layer_shape(modality, layer)  # names the store's modalities / layers
        n_clips = store.clip_count(split)
        return cls(store, split, layer, chosen, np.arange(n_clips, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (f"ClipSet({str(self.store.path)!r}, split={self.split!r}, layer={self.layer!r}, "
                f"modalities={list(self.modalities)}, clips={len(self)})")

    def split_fraction(self, fraction: float, seed: int) -> tuple[ClipSet, ClipSet]:
        """Random disjoint split; the first part has ``round(fraction * len)`` clips.

        ``0.5`` gives the search's weight / architecture halves, ``0.9`` the evaluation's
        train / validation parts (thesis §5.2.2). Each part keeps the split's clip order.

        Raises:
            FeatureStoreError: ``fraction`` outside (0, 1), or a part would be empty.
        """
        if not 0.0 < fraction < 1.0:
            raise FeatureStoreError(f"split_fraction: fraction {fraction} not in (0, 1)")
        n_first = int(round(fraction * len(self)))
        if n_first == 0 or n_first == len(self):
            raise FeatureStoreError(
                f"split_fraction({fraction}) of {len(self)} clips of split {self.split!r} "
                f"leaves a part empty ({n_first} / {len(self) - n_first})")
        chosen = np.random.default_rng(seed).permutation(len(self))
        first = np.sort(self.indices[chosen[:n_first]])
        second = np.sort(self.indices[chosen[n_first:]])
        return replace(self, indices=first), replace(self, indices=second)

    def channels(self) -> tuple[int, ...]:
        """``C`` of each modality, in order."""
        return tuple(self.store.layer_shape(m, self.layer)[0] for m in self.modalities)

    def spatial_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` shared by the modalities.

        Raises:
            FeatureStoreError: the modalities' T, H, W differ at this layer.
        """
        shapes = {m: self.store.layer_shape(m, self.layer)[1:] for m in self.modalities}
        distinct = set(shapes.values())
        if len(distinct) != 1:
            listed = ", ".join(f"{m} {list(s)}" for m, s in shapes.items())
            raise FeatureStoreError(
                f"store {self.store.path}: {self.layer} T, H, W differ between modalities "
                f"({listed})")
        t, h, w = distinct.pop()
        return (t, h, w)

    def labels(self) -> torch.Tensor:
        """Labels, int64 ``[N]``, in the order of ``indices``."""
        return torch.from_numpy(self.store.labels(self.split)[self.indices])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        _check_batch_size(batch_size)
        full, rest = divmod(len(self), batch_size)
        return full if drop_last or rest == 0 else full + 1

    def batches(self, batch_size: int, *, shuffle: bool, seed: int, epoch: int,
                device: str | torch.device = "cpu", drop_last: bool = False,
                view: int | None = None,
                ) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """Mini-batches for one epoch.

        One rng, ``np.random.default_rng((seed, epoch))``, draws first the clip permutation
        (if ``shuffle``), then, for the train split, one view per clip for this epoch (the
        thesis' frame-sampling augmentation, on cached features). Other splits use view 0.
        Within a batch, clips are in storage order (the rows are sorted for locality).

        Args:
            batch_size: clips per batch; the last batch is smaller unless ``drop_last``.
            shuffle: permute the clips (otherwise: the order of ``indices``).
            seed, epoch: non-negative ints; the same pair gives the same batches.
            device: where the tensors go (fp16 rows are moved, then converted on device).
            view: use this view for every clip instead (e.g. 0 for a validation part of the
                train split).

        Yields:
            ``([x_m float32 [B, C_m, T, H, W] per modality in order], labels int64 [B])``.
        """
        _check_batch_size(batch_size)
        if seed < 0 or epoch < 0:
            raise FeatureStoreError(f"batches: seed {seed} and epoch {epoch} must be >= 0")
        rng = np.random.default_rng((seed, epoch))
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        row_index = self.store.row_index(self.split)  # [n_views, n_clips]
        n_views = row_index.shape[0]
        if view is not None:
            if not 0 <= view < n_views:
                raise FeatureStoreError(
                    f"batches: view {view} not in [0, {n_views}) for split {self.split!r}")
            views = np.full(len(self), view, dtype=np.int64)
        elif self.split == TRAIN_SPLIT and n_views > 1:
            views = rng.integers(0, n_views, size=len(self))
        else:
            views = np.zeros(len(self), dtype=np.int64)
        rows = row_index[views, self.indices]  # [N]: the row of each clip this epoch
        labels = self.store.labels(self.split)[self.indices]
        for b in range(self.num_batches(batch_size, drop_last)):
            chosen = order[b * batch_size:(b + 1) * batch_size]
            chosen = chosen[np.argsort(rows[chosen], kind="stable")]
            batch_rows = rows[chosen]
            xs = [torch.from_numpy(self.store.gather(m, self.layer, batch_rows))
                  .to(device=device, non_blocking=True).float() for m in self.modalities]
            yield xs, torch.from_numpy(labels[chosen]).to(device=device)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise FeatureStoreError(f"batch_size {batch_size} must be >= 1")
