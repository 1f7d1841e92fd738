"""The synthetic "what moves where" benchmark, written as a feature store.

Every clip shows objects of every type at distinct cells of a T×H×W grid; one place moves.
RGB features say *what* is at each cell, flow features *where* the motion is, pose features
(unreliably) where the action is. The label is the type of the object at the moving place
(``layout="at"``), just right of it (``"beside"``), ``reach`` cells right of it (``"reach"``)
or at its place ``lag`` frames later (``"lag"``; the last two in
:mod:`adf_service.features.synth_reach`). Only a fusion that keeps the modalities spatially
aligned can solve it: see docs/synthetic-data.md.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

import adf_service
from adf_service.features.store import FeatureStore
from adf_service.features.synth_reach import (
    DEFAULT_KNOB,
    Scenes,
    draw_offset_scenes,
    knob_problems,
    knob_spatial,
    random_cell,
)
from adf_service.features.writer import FeatureStoreWriter
from adf_service.modalities import MODALITIES

__all__ = ["LAYOUTS", "Layout", "SyntheticDataError", "SynthSpec", "generate_synthetic_store",
           "synthetic_scenes"]

Layout = Literal["at", "beside", "reach", "lag"]
LAYOUTS: tuple[str, ...] = ("at", "beside", "reach", "lag")
_CELL_SPATIAL = (4, 7, 7)  # T, H, W of layouts at and beside

_CHUNK = 256  # clips generated at once: bounded memory; part of the rng stream, keep fixed
_SPLIT_CODES = {"train": 0, "test": 1}
_PROTOTYPE_STREAM = 7  # rng stream ids, distinct from the split codes
_LAYER4_STREAM = 8


class SyntheticDataError(ValueError):
    """Parameters that cannot make a synthetic store."""


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic store (its provenance).

    Feature values are prototypes with unit-variance entries plus Gaussian noise of std
    ``noise``; ``distractor`` is the amplitude (relative to 1) of weak motion at a place
    that is not the answer (another object for ``"at"``, an empty cell for ``"beside"``, a
    place on the mover's side for ``"reach"`` and ``"lag"``);
    ``temporal_jitter`` the per-frame variation of the motion amplitude.

    ``reach`` (layout ``"reach"``) and ``lag`` (layout ``"lag"``) are the difficulty knobs:
    the offset in W cells, or in T frames, between the mover and the labelled object; None
    is 3 for the layout they belong to and must stay None for the others. ``spatial`` None
    is the layout's own: 4×7×7 for at and beside, 2×4×2d for reach, 2L×4×1 for lag. The
    record holds the resolved values, so its provenance says what was made.
    """

    n_train: int = 900
    n_test: int = 300
    n_classes: int = 4
    seed: int = 0
    n_train_views: int = 2
    channels: tuple[int, int, int] = (32, 32, 8)  # rgb, flow, pose layer3 channels
    spatial: tuple[int, int, int] | None = None  # T, H, W of layer3; None: the layout's
    layout: Layout = "at"
    pose_reliability: float = 0.5
    noise: float = 0.5
    distractor: float = 0.5
    temporal_jitter: float = 0.25
    reach: int | None = None  # layout "reach": the offset d in W cells; None: 3
    lag: int | None = None  # layout "lag": the offset L in T frames; None: 3

    @property
    def knob(self) -> int | None:
        """The layout's difficulty knob: ``reach`` or ``lag``; None for at and beside."""
        return {"reach": self.reach, "lag": self.lag}.get(self.layout)

    def __post_init__(self) -> None:
        # resolve the layout's defaults in place: the record is what was made, not what was asked
        if self.layout in ("reach", "lag") and self.knob is None:
            object.__setattr__(self, self.layout, DEFAULT_KNOB)
        if self.spatial is None:
            knob = self.knob
            object.__setattr__(self, "spatial", knob_spatial(self.layout, knob) if isinstance(
                knob, int) and knob >= 1 else _CELL_SPATIAL)
        problems = []
        if self.n_train < 1 or self.n_test < 1:
            problems.append(f"n_train={self.n_train}, n_test={self.n_test} must be >= 1")
        if self.n_classes < 2:
            problems.append(f"n_classes={self.n_classes} must be >= 2")
        if len(self.channels) != 3 or min(self.channels) < 1:
            problems.append(
                f"channels={self.channels} must be three positive ints (rgb, flow, pose)")
        if len(self.spatial) != 3 or min(self.spatial) < 1:
            problems.append(f"spatial={self.spatial} must be three positive ints (T, H, W)")
        elif self.layout in ("at", "beside"):
            h, w = self.spatial[1:]
            if self.n_classes + 2 > h * w:
                problems.append(f"{self.n_classes} objects, the moving place and a free cell "
                                f"need {self.n_classes + 2} cells; spatial {h}x{w} has {h * w}")
            if self.layout == "beside" and h * (w - 1) < self.n_classes + 1:
                problems.append(
                    f"layout 'beside' puts {self.n_classes} objects off column 0, beside a "
                    f"moving place: needs H*(W-1) >= {self.n_classes + 1}, got spatial="
                    f"{self.spatial}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout={self.layout!r} not in {{{', '.join(map(repr, LAYOUTS))}}}")
        problems += knob_problems(self.layout, self.n_classes, self.spatial, self.reach, self.lag)
        if self.n_train_views < 1:
            problems.append(f"n_train_views={self.n_train_views} must be >= 1")
        if not 0.0 <= self.pose_reliability <= 1.0:
            problems.append(f"pose_reliability={self.pose_reliability} not in [0, 1]")
        if self.noise <= 0 or self.distractor < 0 or self.temporal_jitter < 0:
            problems.append(f"noise={self.noise} must be > 0, distractor={self.distractor} and "
                            f"temporal_jitter={self.temporal_jitter} >= 0")
        if self.seed < 0:
            problems.append(f"seed={self.seed} must be >= 0")
        if problems:
            raise SyntheticDataError("synthetic store: " + "; ".join(problems))


def generate_synthetic_store(
    out: str | os.PathLike[str],
    *,
    n_train: int = 900,
    n_test: int = 300,
    n_classes: int = 4,
    seed: int = 0,
    n_train_views: int = 2,
    channels: tuple[int, int, int] = (32, 32, 8),
    spatial: tuple[int, int, int] | None = None,
    layout: Layout = "at",
    pose_reliability: float = 0.5,
    noise: float = 0.5,
    distractor: float = 0.5,
    temporal_jitter: float = 0.25,
    reach: int | None = None,
    lag: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureStore:
    """Write a "what moves where" store at ``out`` and open it.

    Modalities rgb, flow, pose; layer3 ``[C_m, T, H, W]`` (``channels``, ``spatial``);
    layer4 ``[2*C_m, ceil(T/2), ceil(H/2), ceil(W/2)]``, computed from each modality's layer3
    alone. Splits: ``n_train`` train clips with ``n_train_views`` views, ``n_test`` test
    clips. ``layout`` at, beside, reach (knob ``reach``: offset in W cells) or lag (knob
    ``lag``: offset in T frames); ``spatial`` None is the layout's own shape (:class:`SynthSpec`).
    The same arguments give byte-identical arrays. ``progress(done, total)`` is called with
    rows written so far.

    Raises:
        SyntheticDataError: parameters that cannot make a store.
        FeatureStoreError: ``out`` already holds a store and not ``overwrite``.
    """
    spec = SynthSpec(n_train, n_test, n_classes, seed, n_train_views, tuple(channels),
                     None if spatial is None else tuple(spatial), layout, pose_reliability,
                     noise, distractor, temporal_jitter, reach, lag)
    layer3 = {m: (c, *spec.spatial) for m, c in zip(MODALITIES, spec.channels)}
    shapes = {m: {"layer3": list(s), "layer4": list(deeper_shape(s))} for m, s in layer3.items()}
    proto_rng = np.random.default_rng((spec.seed, _PROTOTYPE_STREAM))
    prototypes = {
        "rgb": proto_rng.standard_normal((spec.n_classes, spec.channels[0]), dtype=np.float32),
        "flow": proto_rng.standard_normal(spec.channels[1], dtype=np.float32),
        "pose": proto_rng.standard_normal(spec.channels[2], dtype=np.float32),
    }
    proj_rng = np.random.default_rng((spec.seed, _LAYER4_STREAM))
    projections = {m: proj_rng.standard_normal((2 * c, c), dtype=np.float32) / np.sqrt(c)
                   for m, c in zip(MODALITIES, spec.channels)}
    provenance = {
        "generator": "adf_service.features.synth.generate_synthetic_store",
        "parameters": asdict(spec),
        "seed": spec.seed,
        "code_version": adf_service.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    sizes = {"train": spec.n_train, "test": spec.n_test}
    total = spec.n_train * spec.n_train_views + spec.n_test
    done = 0
    with FeatureStoreWriter(
            out, name=f"synthetic-what-moves-where-{spec.layout}{spec.knob or ''}", shapes=shapes,
            classes=[f"moving-object-{k}" for k in range(spec.n_classes)],
            n_train_views=spec.n_train_views, dtype="float16", provenance=provenance,
            rows_per_batch=max(sizes.values()), overwrite=overwrite) as writer:
        for split, n_clips in sizes.items():
            scenes = synthetic_scenes(spec, split)
            for view in range(spec.n_train_views if split == "train" else 1):
                for start in range(0, n_clips, _CHUNK):
                    rng = np.random.default_rng(
                        (spec.seed, _SPLIT_CODES[split], view + 1, start // _CHUNK))
                    clips = slice(start, min(start + _CHUNK, n_clips))
                    maps = _render(spec, scenes, clips, view, prototypes, rng)
                    deep = {m: deeper_layer(x, projections[m]) for m, x in maps.items()}
                    for i in range(clips.stop - clips.start):
                        n = clips.start + i
                        writer.add(f"{split}-{n:06d}", int(scenes.labels[n]), split, view,
                                   {m: {"layer3": maps[m][i], "layer4": deep[m][i]}
                                    for m in MODALITIES})
                    done += clips.stop - clips.start
                    if progress is not None:
                        progress(done, total)
                writer.flush()  # one record batch per (split, view): zero-copy layer arrays
    return FeatureStore.open(out)


def synthetic_scenes(spec: SynthSpec, split: str) -> Scenes:
    """The scenes :func:`generate_synthetic_store` renders for ``split`` of ``spec``'s store.

    Clip i of the split is the store's clip ``f"{split}-{i:06d}"``; its label is
    ``labels[i]``, and the object at place p is of type ``types[i, p]`` (-1: empty), places
    numbered as :class:`~adf_service.features.synth_reach.Scenes` says.

    Raises:
        SyntheticDataError: ``split`` is not ``"train"`` or ``"test"``.
    """
    if split not in _SPLIT_CODES:
        raise SyntheticDataError(f"split {split!r} not in {set(_SPLIT_CODES)}")
    n_clips = spec.n_train if split == "train" else spec.n_test
    return _draw_scenes(spec, n_clips, np.random.default_rng((spec.seed, _SPLIT_CODES[split])))


def _draw_scenes(spec: SynthSpec, n: int, rng: np.random.Generator) -> Scenes:
    """Place objects, the moving place, the distractor and the pose cue for ``n`` clips."""
    if spec.knob is not None:
        return draw_offset_scenes(spec.layout, spec.knob, n, spec.n_classes, spec.spatial,
                                  spec.pose_reliability, spec.temporal_jitter, rng)
    t, h, w = spec.spatial
    k = spec.n_classes
    cells = h * w
    allowed = np.arange(cells) if spec.layout == "at" else np.flatnonzero(
        np.arange(cells) % w < w - 1)  # "beside": the cell right of the mover must exist
    mover = allowed[rng.integers(0, len(allowed), size=n)]
    target = mover if spec.layout == "at" else mover + 1  # where the labelled object sits
    labels = rng.integers(0, k, size=n)
    # the other k-1 types at distinct random cells, away from the mover and the target
    # ("beside": and off column 0, where the target never is, so that every object's
    # position has the same distribution and a global pool says nothing about the label)
    rows = np.arange(n)
    scores = rng.random((n, cells))
    if spec.layout == "beside":
        scores[:, np.arange(cells) % w == 0] = np.inf
    scores[rows, mover] = np.inf
    scores[rows, target] = np.inf
    others = np.argsort(scores, axis=1)[:, :k - 1]  # [n, k-1]
    other_types = (labels[:, None] + 1 + np.arange(k - 1)[None, :]) % k  # cells are random
    types = np.full((n, cells), -1, dtype=np.int64)
    types[rows, target] = labels
    types[rows[:, None], others] = other_types
    reliable = rng.random(n) < spec.pose_reliability
    if spec.layout == "at":
        # decoys at other objects: motion or pose there names a wrong type
        distractor = others[rows, rng.integers(0, k - 1, size=n)]
        decoy = others[rows, rng.integers(0, k - 1, size=n)]
    else:
        # decoys at empty cells: at an object they would rule its type out point-wise
        taken = types >= 0
        taken[rows, mover] = True
        distractor = random_cell(rng, ~taken)
        decoy = random_cell(rng, ~taken)
    pose = np.where(reliable, mover, decoy)
    envelope = 1.0 + spec.temporal_jitter * rng.uniform(-1.0, 1.0, size=(n, t))
    return Scenes(labels, types, mover, distractor, pose, envelope.astype(np.float32))


def _render(spec: SynthSpec, scenes: Scenes, clips: slice, view: int,
            prototypes: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """layer3 maps of one view of ``clips``: ``{modality: float32 [n, C_m, T, H, W]}``.

    A view differs from the others by fresh noise and a temporal shift of the motion
    envelope (as differently sampled frames would); view 0 is unshifted. For per-frame
    scenes (lag) the shift changes amplitudes only, never the frame an event is at.
    """
    t, h, w = spec.spatial
    cells = h * w
    types = scenes.types[clips]
    n, places = types.shape
    rows = np.arange(n)
    envelope = scenes.envelope[clips]
    if view > 0 and t > 1:
        shift = rng.integers(-1, 2, size=n)  # -1, 0 or +1 frame
        envelope = np.take_along_axis(envelope, (np.arange(t)[None, :] - shift[:, None]) % t,
                                      axis=1)
    occupied = (types[:, None, :] == np.arange(spec.n_classes)[None, :, None])  # [n, K, P]
    rgb_signal = np.einsum("kc,nkp->ncp", prototypes["rgb"], occupied.astype(np.float32))
    motion = np.zeros((n, places), dtype=np.float32)
    motion[rows, scenes.distractor[clips]] = spec.distractor
    motion[rows, scenes.mover[clips]] = 1.0
    pose_at = np.zeros((n, places), dtype=np.float32)
    pose_at[rows, scenes.pose[clips]] = 1.0
    if scenes.per_frame:  # a place is (frame, cell): P = T*H*W, frame-major
        motion *= np.repeat(envelope, cells, axis=1)
        signals = {
            "rgb": rgb_signal.reshape(n, -1, t, cells),
            "flow": (prototypes["flow"][None, :, None] * motion[:, None, :]).reshape(n, -1, t, cells),
            "pose": (prototypes["pose"][None, :, None] * pose_at[:, None, :]).reshape(n, -1, t, cells),
        }
    else:
        signals = {
            "rgb": np.broadcast_to(rgb_signal[:, :, None, :], (n, spec.channels[0], t, cells)),
            "flow": (prototypes["flow"][None, :, None, None] * envelope[:, None, :, None]
                     * motion[:, None, None, :]),
            "pose": np.broadcast_to(prototypes["pose"][None, :, None, None]
                                    * pose_at[:, None, None, :], (n, spec.channels[2], t, cells)),
        }
    maps = {}
    for modality, c in zip(MODALITIES, spec.channels):
        x = rng.standard_normal((n, c, t, cells), dtype=np.float32)
        x *= spec.noise
        x += signals[modality]
        maps[modality] = x.reshape(n, c, t, h, w)
    return maps


def deeper_shape(shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """layer4 shape of a synthetic layer3 ``(C, T, H, W)``: ``(2C, ⌈T/2⌉, ⌈H/2⌉, ⌈W/2⌉)``.
    """
    c, t, h, w = shape
    return (2 * c, -(-t // 2), -(-h // 2), -(-w // 2))


def deeper_layer(x: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """A backbone's deeper layer, per modality: 1×1×1 projection, ReLU, 2×2×2 average pool.

    Args:
        x: layer3 maps, float32 ``[n, C, T, H, W]``.
        projection: float32 ``[2C, C]``, fixed per modality.

    Returns:
        float32 ``[n, 2C, ⌈T/2⌉, ⌈H/2⌉, ⌈W/2⌉]``; windows cut by the border (ceil mode)
        average over the cells they cover.
    """
    n, c, t, h, w = x.shape
    y = np.matmul(projection, x.reshape(n, c, t * h * w))  # [n, 2C, T*H*W]
    np.maximum(y, 0.0, out=y)
    _, t2, h2, w2 = deeper_shape((c, t, h, w))
    padded = np.zeros((n, projection.shape[0], 2 * t2, 2 * h2, 2 * w2), dtype=np.float32)
    padded[:, :, :t, :h, :w] = y.reshape(n, -1, t, h, w)
    covered = np.zeros((2 * t2, 2 * h2, 2 * w2), dtype=np.float32)
    covered[:t, :h, :w] = 1.0
    for axis in (-3, -2, -1):  # pairwise sums: much faster than one 8-D reduction
        even = [slice(None)] * padded.ndim
        odd = list(even)
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        padded = padded[tuple(even)] + padded[tuple(odd)]
        covered = covered[tuple(even[-3:])] + covered[tuple(odd[-3:])]
    return padded / covered
