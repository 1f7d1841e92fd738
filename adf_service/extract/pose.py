"""Pose: the 3-channel body-part modality (docs/design.md §6; thesis §4.1.1), pluggable.

The thesis' pose stream sees a body-part segmentation rendered as colours, one RGB image
per sampled frame. No pose estimator that runs offline ships with this project (see
docs/pose.md for what was checked on PyPI), so the estimator is a plug-in: a *pose
extractor* maps ``(clip_id, frames, indices)`` to ``[N, 3, H, W]`` float32 in ``[0, 1]``
and says in ``provenance()`` what it is. Extractors are registered by name, timm-style:

    @register_pose_extractor("my_parser")
    class MyParser:
        name = "my_parser"
        def __init__(self, weights: str): ...
        def __call__(self, clip_id, frames, indices): ...
        def provenance(self): return {"pose_extractor": "my_parser", ...}

    extractor = create_pose_extractor("my_parser", weights="parser.pth")
    pose = pose_at(extractor, clip_id, frames, indices)  # checked [N, 3, H, W]

Built in: ``precomputed`` (renderings made by your own tool, read from PNG files) and
``zeros`` (a placeholder of black frames, marked as such in the provenance).
"""

from __future__ import annotations

import inspect
import string
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import cv2
import numpy as np

from adf_service.extract.sampling import check_clip

__all__ = [
    "POSE_EXTRACTORS",
    "PoseError",
    "PoseExtractor",
    "PrecomputedPose",
    "ZeroPose",
    "create_pose_extractor",
    "pose_at",
    "register_pose_extractor",
]


class PoseError(ValueError):
    """A pose request that cannot be served: unknown extractor, bad options, missing files."""


@runtime_checkable
class PoseExtractor(Protocol):
    """What the extraction pipeline calls for the pose modality of one clip."""

    name: str

    def __call__(self, clip_id: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``frames`` [F, H, W, 3] uint8 RGB, ``indices`` [N] int64 in [0, F) → [N, 3, H, W] float32 in [0, 1]."""
        ...

    def provenance(self) -> dict:
        """JSON-able record for the feature manifest; includes ``pose_extractor`` (the name)."""
        ...


POSE_EXTRACTORS: dict[str, Callable[..., PoseExtractor]] = {}


def register_pose_extractor(name: str) -> Callable[[Callable[..., PoseExtractor]], Callable[..., PoseExtractor]]:
    """Class (or factory) decorator: make ``name`` available to `create_pose_extractor`."""

    def register(constructor: Callable[..., PoseExtractor]) -> Callable[..., PoseExtractor]:
        if name in POSE_EXTRACTORS and POSE_EXTRACTORS[name] is not constructor:
            raise PoseError(f"pose extractor {name!r} is already registered by {POSE_EXTRACTORS[name]!r}")
        POSE_EXTRACTORS[name] = constructor
        return constructor

    return register


def create_pose_extractor(name: str, **options) -> PoseExtractor:
    """Build the registered extractor ``name`` with its keyword ``options``.

    Raises `PoseError` naming the registered extractors for an unknown name, and the
    accepted options for options the constructor does not take.
    """
    if name not in POSE_EXTRACTORS:
        raise PoseError(f"pose extractor {name!r} not in {{{', '.join(sorted(POSE_EXTRACTORS))}}}")
    constructor = POSE_EXTRACTORS[name]
    signature = inspect.signature(constructor)
    try:
        signature.bind(**options)
    except TypeError as exc:
        raise PoseError(f"pose extractor {name!r} takes options {signature}: {exc}") from None
    return constructor(**options)


def pose_at(extractor: PoseExtractor, clip_id: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Run ``extractor`` on one clip and check what it returns.

    Returns ``[N, 3, H, W]`` float32 in ``[0, 1]`` for ``frames`` ``[F, H, W, 3]`` uint8 and
    ``indices`` ``[N]``; a plug-in that returns anything else raises `PoseError` naming it.
    """
    check_clip(frames, indices, PoseError)
    indices = np.asarray(indices, dtype=np.int64)
    pose = extractor(clip_id, frames, indices)
    expected = (len(indices), 3, *frames.shape[1:3])
    if not isinstance(pose, np.ndarray) or pose.shape != expected or pose.dtype != np.float32:
        got = (getattr(pose, "shape", type(pose).__name__), getattr(pose, "dtype", None))
        raise PoseError(
            f"pose extractor {extractor.name!r} returned shape/dtype {got} for clip {clip_id!r}; "
            f"expected {expected} float32"
        )
    if pose.size and (pose.min() < 0.0 or pose.max() > 1.0):
        raise PoseError(
            f"pose extractor {extractor.name!r} returned values in [{pose.min()}, {pose.max()}] "
            f"for clip {clip_id!r}; expected [0, 1]"
        )
    return pose


@register_pose_extractor("precomputed")
class PrecomputedPose:
    """Pose renderings computed beforehand by your own estimator, read from image files.

    The file of sampled frame ``i`` of clip ``clip_id`` is
    ``root / pattern.format(clip_id=clip_id, frame=i + frame_offset)``. Frame numbers count
    the frames of the *decoded* clip from 0 (the same frames the RGB stream sees, before
    looping or sampling); set ``frame_offset=1`` for tools that number from 1 (ffmpeg's
    ``%05d`` image sequences do). Images are RGB colour renderings (any size, any format
    OpenCV reads; grey images become 3 equal channels, alpha is dropped), resized to the
    clip's H×W by nearest neighbour so that segmentation colours are never blended, and
    scaled to ``[0, 1]``.
    """

    name = "precomputed"

    def __init__(self, root: str | Path, pattern: str = "{clip_id}/{frame:05d}.png", frame_offset: int = 0):
        fields = {field for _, field, _, _ in string.Formatter().parse(pattern) if field is not None}
        if fields != {"clip_id", "frame"}:
            raise PoseError(
                f"precomputed pose pattern {pattern!r} has fields {sorted(fields)}; "
                "it needs exactly {clip_id} and {frame} (e.g. '{clip_id}/{frame:05d}.png')"
            )
        self.root = Path(root)
        self.pattern = pattern
        self.frame_offset = int(frame_offset)

    def path(self, clip_id: str, index: int) -> Path:
        """The file expected for sampled frame ``index`` (0-based in the decoded clip) of ``clip_id``."""
        return self.root / self.pattern.format(clip_id=clip_id, frame=int(index) + self.frame_offset)

    def __call__(self, clip_id: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        height, width = frames.shape[1:3]
        indices = np.asarray(indices, dtype=np.int64)
        pose = np.empty((len(indices), 3, height, width), dtype=np.float32)
        for index in np.unique(indices):
            pose[indices == index] = self._read(clip_id, int(index), height, width)
        return pose

    def _read(self, clip_id: str, index: int, height: int, width: int) -> np.ndarray:
        """[3, height, width] float32 in [0, 1] from the file of frame ``index``."""
        path = self.path(clip_id, index)
        if not path.is_file():
            where = "missing" if path.parent.is_dir() else f"missing (directory {path.parent} does not exist)"
            raise PoseError(
                f"precomputed pose for clip {clip_id!r} frame {index} (pattern {self.pattern!r}, "
                f"frame_offset {self.frame_offset}): {path} {where}"
            )
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PoseError(f"precomputed pose for clip {clip_id!r} frame {index}: OpenCV cannot read {path}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        return image.transpose(2, 0, 1).astype(np.float32) / 255.0

    def provenance(self) -> dict:
        return {
            "pose_extractor": self.name,
            "pose_root": str(self.root),
            "pose_pattern": self.pattern,
            "pose_frame_offset": self.frame_offset,
            "pose_placeholder": False,
        }


@register_pose_extractor("zeros")
class ZeroPose:
    """A placeholder: black frames for every sampled index, for running without a pose estimator.

    The pose stream then carries no information (its backbone still sees a valid input, so
    the feature layout stays that of the thesis). The provenance says ``pose_placeholder:
    True`` so that nobody reads results made with it as results with pose.
    """

    name = "zeros"

    def __call__(self, clip_id: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return np.zeros((len(indices), 3, *frames.shape[1:3]), dtype=np.float32)

    def provenance(self) -> dict:
        return {"pose_extractor": self.name, "pose_placeholder": True}
