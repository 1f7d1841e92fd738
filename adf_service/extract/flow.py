"""Optical flow: the 2-channel flow modality (docs/design.md §6; thesis §4.1.1).

The flow stream of the fusion network sees, at every sampled frame position ``i`` of a
clip, the dense optical flow from frame ``i`` to frame ``i + 1``: channel 0 is the
horizontal component x (positive = rightward), channel 1 the vertical component y
(positive = downward), both in pixels of the decoded clip, clipped to ``±bound`` and
divided by ``bound`` so the backbone gets values in ``[-1, 1]``.

Two methods:

- ``tvl1``: TV-L1 (Zach, Pock & Bischof 2007, in the dual formulation of OpenCV's
  ``cv2.optflow.DualTVL1OpticalFlow``), the method of the thesis. It lives in the
  ``opencv-contrib`` build only. It is slow on a CPU (2 threads, 112×112): about 0.17 s
  per frame pair where the frames match (smooth motion), up to 0.8 s where they do not
  (cuts, noise), so 10–50 s per 64-frame clip. Only the sampled pairs are computed, never
  the whole video.
- ``farneback``: OpenCV's polynomial-expansion flow, 40–400× faster and less accurate
  on textureless regions; a fallback where the contrib build is missing. Features made
  with it are a different modality input, so the method goes into the provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from adf_service.extract.sampling import check_clip

__all__ = [
    "FLOW_METHODS",
    "FlowConfig",
    "FlowError",
    "available_flow_methods",
    "flow_at",
    "resolve_flow_method",
]

FLOW_METHODS = ("tvl1", "farneback")

# Farneback has no library defaults (every argument is positional); these are the values
# of OpenCV's own sample (samples/python/opt_flow.py): a 3-level pyramid halving each
# level, 15-px averaging window, 3 iterations, 5-px polynomial neighbourhood.
_FARNEBACK_ARGS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


class FlowError(ValueError):
    """An optical-flow request that cannot be served (bad method, config or input)."""


def available_flow_methods() -> tuple[str, ...]:
    """The flow methods this OpenCV build can run, in order of preference."""
    optflow = getattr(cv2, "optflow", None)
    has_tvl1 = optflow is not None and hasattr(optflow, "DualTVL1OpticalFlow_create")
    return FLOW_METHODS if has_tvl1 else ("farneback",)


def resolve_flow_method(method: str) -> str:
    """Turn a configured method into the one that will run.

    ``"auto"`` becomes ``"tvl1"`` where the contrib build is installed, else ``"farneback"``.
    Raises `FlowError` for an unknown name or for ``"tvl1"`` without the contrib build.
    """
    if method == "auto":
        return available_flow_methods()[0]
    if method not in FLOW_METHODS:
        raise FlowError(f"flow method {method!r} not in {{auto, {', '.join(FLOW_METHODS)}}}")
    if method not in available_flow_methods():
        raise FlowError(
            f"flow method {method!r} needs cv2.optflow.DualTVL1OpticalFlow_create, which this OpenCV "
            f"({cv2.__version__}) lacks: install opencv-contrib-python-headless (and uninstall "
            "opencv-python / opencv-python-headless, which shadow it), or use method 'farneback'"
        )
    return method


@dataclass(frozen=True)
class FlowConfig:
    """How the flow modality is computed.

    Attributes:
        method: ``"auto"``, ``"tvl1"`` or ``"farneback"``; ``"auto"`` prefers TV-L1.
        bound: pixels per frame; flow is clipped to ``±bound`` and divided by it. 20 px is
            the usual bound of TSN-style flow extraction; at 112×112 a motion of 20 px per
            frame is already a fifth of the frame.
    """

    method: str = "auto"
    bound: float = 20.0

    def __post_init__(self) -> None:
        if self.method != "auto" and self.method not in FLOW_METHODS:
            raise FlowError(f"flow method {self.method!r} not in {{auto, {', '.join(FLOW_METHODS)}}}")
        if not self.bound > 0:
            raise FlowError(f"flow bound must be > 0 pixels, got {self.bound!r}")

    def provenance(self) -> dict:
        """What a feature manifest records about the flow: the method that ran and the bound."""
        return {"flow_method": resolve_flow_method(self.method), "flow_bound": float(self.bound)}


def flow_at(frames: np.ndarray, indices: np.ndarray, config: FlowConfig = FlowConfig()) -> np.ndarray:
    """The flow modality at the sampled frame positions of one clip.

    Args:
        frames: the decoded clip, ``[F, H, W, 3]`` uint8 RGB.
        indices: sampled positions in the clip, ``[N]`` integers in ``[0, F)``; repeats allowed.

    Returns:
        ``[N, 2, H, W]`` float32 in ``[-1, 1]``: at position ``i`` the flow from frame ``i`` to
        ``i + 1`` (from ``F - 2`` to ``F - 1`` for the last frame), channel 0 = x (rightward +),
        channel 1 = y (downward +), clipped to ``±config.bound`` pixels and divided by it.
        A 1-frame clip has no motion: all zeros.
    """
    check_clip(frames, indices, FlowError)
    method = resolve_flow_method(config.method)
    n_frames, height, width, _ = frames.shape
    flows = np.zeros((len(indices), 2, height, width), dtype=np.float32)
    if n_frames < 2:
        return flows
    # The pair starting at each index; repeated (and last/second-to-last) indices share one.
    starts = np.minimum(np.asarray(indices, dtype=np.int64), n_frames - 2)
    pair_flow = _pair_flow_function(method)
    for start in np.unique(starts):
        prev = cv2.cvtColor(np.ascontiguousarray(frames[start]), cv2.COLOR_RGB2GRAY)
        nxt = cv2.cvtColor(np.ascontiguousarray(frames[start + 1]), cv2.COLOR_RGB2GRAY)
        flow = pair_flow(prev, nxt)  # [H, W, 2] pixels, (x, y)
        flows[starts == start] = np.clip(flow, -config.bound, config.bound).transpose(2, 0, 1) / config.bound
    return flows


def _pair_flow_function(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(prev, next) -> [H, W, 2] float32`` flow in pixels for grayscale uint8 frames."""
    if method == "tvl1":
        # OpenCV's defaults (tau 0.25, lambda 0.15, theta 0.3, 5 scales × 5 warps, epsilon 0.01)
        # are what action-recognition flow extraction usually runs, so features stay comparable
        # with flow backbones pre-trained that way; fewer scales or warps would be faster but a
        # different input. Speed is bought by computing only the sampled pairs instead.
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda prev, nxt: tvl1.calc(prev, nxt, None)
    return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None, **_FARNEBACK_ARGS)
