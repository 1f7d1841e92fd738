"""Frame sampling: which 64 frames of a clip the backbones see (thesis §5.1.3, docs/design.md §6).

A clip shorter than 64 frames is looped (repeated whole) until it has at least 64; then
the fewest frames are trimmed, split between start and end, to make a multiple of 64; the
rest is cut into 64 equal segments. Training takes one random frame per segment;
validation/test take one random offset used in every segment (equidistant frames).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["N_SEGMENTS", "SegmentLayout", "check_clip", "sampled_frames", "segment_layout", "view_rng"]

N_SEGMENTS = 64  # frames per sampled clip (thesis §5.1.3)


@dataclass(frozen=True)
class SegmentLayout:
    """How a clip of ``n_frames`` is looped, trimmed and cut into segments (all in frames).

    Positions are in looped coordinates ``0..looped_length-1``; position ``q`` shows frame
    ``q % n_frames`` of the original clip. Segment ``k`` covers positions
    ``[trim_start + k·segment_length, trim_start + (k+1)·segment_length)``.
    """

    n_frames: int
    n_segments: int
    looped_length: int  # n_frames, or ceil(n_segments / n_frames) · n_frames when shorter
    trim_start: int
    trim_end: int  # trim_start or trim_start + 1
    segment_length: int

    @property
    def segment_starts(self) -> np.ndarray:
        """int64 [n_segments]: the first looped position of every segment."""
        return self.trim_start + self.segment_length * np.arange(self.n_segments, dtype=np.int64)


def segment_layout(n_frames: int, n_segments: int = N_SEGMENTS) -> SegmentLayout:
    """The loop / trim / segment layout of a clip of ``n_frames`` frames."""
    if n_frames < 1:
        raise ValueError(f"n_frames {n_frames}: a clip needs at least 1 frame")
    if n_segments < 1:
        raise ValueError(f"n_segments {n_segments}: need at least 1 segment")
    looped = n_frames if n_frames >= n_segments else -(-n_segments // n_frames) * n_frames
    remainder = looped % n_segments
    return SegmentLayout(
        n_frames=n_frames,
        n_segments=n_segments,
        looped_length=looped,
        trim_start=remainder // 2,
        trim_end=remainder - remainder // 2,
        segment_length=(looped - remainder) // n_segments,
    )


def sampled_frames(n_frames: int, *, train: bool, rng: np.random.Generator,
                   n_segments: int = N_SEGMENTS) -> np.ndarray:
    """int64 [n_segments]: indices into the original clip (``0..n_frames-1``), in temporal order.

    ``train``: one independent uniformly random frame per segment; otherwise one random
    offset ``p ∈ [0, segment_length)``, drawn once, used in every segment. For a looped clip
    the order is that of the looped clip, so indices wrap around.
    """
    layout = segment_layout(n_frames, n_segments)
    if train:
        offsets = rng.integers(0, layout.segment_length, size=n_segments)
    else:
        offsets = np.full(n_segments, rng.integers(0, layout.segment_length))
    return ((layout.segment_starts + offsets) % n_frames).astype(np.int64)


def view_rng(seed: int, clip_id: str, view: int) -> np.random.Generator:
    """A generator that depends only on (seed, clip_id, view): reproducible across processes.

    The clip id is hashed with blake2b (Python's ``hash()`` is salted per process).
    """
    if seed < 0 or view < 0:
        raise ValueError(f"seed {seed} and view {view} must be ≥ 0")
    digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=16).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little"), view])


def check_clip(frames: np.ndarray, indices: np.ndarray, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` unless ``frames`` is a decoded clip and ``indices`` sampled positions in it.

    ``frames``: ``[F, H, W, 3]`` uint8 RGB with ``F ≥ 1``; ``indices``: ``[N]`` integers in
    ``[0, F)``. What the modality extractors (flow, pose) take; each raises its own type.
    """
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise error(f"frames must be an array [F, H, W, 3] (RGB), got shape {shape}")
    if frames.dtype != np.uint8:
        raise error(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    if len(frames) == 0:
        raise error("frames is an empty clip (F = 0); a decoded clip has at least one frame")
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise error(f"indices must be a 1-d integer array, got shape {indices.shape} dtype {indices.dtype}")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(frames)):
        raise error(
            f"indices must lie in [0, {len(frames)}) for a {len(frames)}-frame clip, "
            f"got min {indices.min()} max {indices.max()}"
        )
