"""The reach family of the "what moves where" benchmark: layouts with a difficulty knob.

In ``layout="reach"`` (knob ``reach`` = d) the evidence of *where* (flow, pose) and the
evidence of *what* (rgb) sit exactly d cells apart in W; in ``layout="lag"`` (knob ``lag``
= L) they sit exactly L frames apart in T. A fusion network has to carry one to the other:
a 3×3×3 conv reaches one cell per layer, a dilated conv two, a 1×1×1 conv none. Both
layouts are one construction, "a mover on the near side, a dense count-balanced field of
objects on the far side, the label the type of the object at the mover's place shifted by
the offset", on places that are cells (reach) or frame-cells (lag); see
docs/synthetic-data.md. This module also holds :class:`Scenes`, the record every layout
draws, so that :mod:`adf_service.features.synth` imports from here and never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_KNOB",
    "Scenes",
    "draw_offset_scenes",
    "knob_problems",
    "knob_spatial",
    "random_cell",
]

DEFAULT_KNOB = 3  # d = 3 (and L = 3): the issue-12 setting where sparse genotypes split


@dataclass(frozen=True)
class Scenes:
    """What stays the same across a split's views, per clip (N clips, P places).

    A place is a cell of the H×W grid (P = H*W, index ``row*W + column``) whose content
    lasts all T frames (layouts at, beside, reach), or, where ``per_frame``, a frame and a
    cell (P = T*H*W, index ``frame*H*W + row*W + column``) whose content exists at that
    frame only (layout lag).
    """

    labels: np.ndarray  # int64 [N]
    types: np.ndarray  # int64 [N, P]: object type at each place, -1 where empty
    mover: np.ndarray  # int64 [N]: the moving place
    distractor: np.ndarray  # int64 [N]: a place with weak motion (never the answer)
    pose: np.ndarray  # int64 [N]: the place of the pose cue
    envelope: np.ndarray  # float32 [N, T]: motion amplitude per frame
    per_frame: bool = False  # places are frame-cells (lag), not cells


def knob_spatial(layout: str, knob: int) -> tuple[int, int, int]:
    """The default T, H, W of a knob layout: reach 2×4×2d, lag 2L×4×1.

    Lag L is reach d = L with W and T swapped: 4L places for the mover, 4L for the objects,
    each type L times. (Reach's two frames repeat every cell; lag's places have one frame.)
    """
    return (2, 4, 2 * knob) if layout == "reach" else (2 * knob, 4, 1)


def knob_problems(layout: str, n_classes: int, spatial: tuple[int, ...],
                  reach: object, lag: object) -> list[str]:
    """What is wrong with the knobs ``reach`` and ``lag`` for ``layout`` (empty: nothing).

    ``spatial`` is checked against the knob only when it is three positive ints (the caller
    names a malformed one).
    """
    problems = []
    for name, value, owner in (("reach", reach, "reach"), ("lag", lag, "lag")):
        if value is None:
            continue
        if layout != owner:
            problems.append(f"{name}={value!r} is the knob of layout {owner!r}, "
                            f"not of layout {layout!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name}={value!r} must be an int >= 1")
    if layout not in ("reach", "lag") or problems or len(spatial) != 3 or min(spatial) < 1:
        return problems
    t, h, w = spatial
    if layout == "reach":
        d = reach
        if w != 2 * d:
            problems.append(f"layout 'reach' with reach={d} needs W = 2*reach = {2 * d} (the "
                            f"mover's {d} columns, then the objects' {d}); got spatial={spatial}")
        elif (h * d) % n_classes:
            problems.append(f"layout 'reach' balances {n_classes} types over H*reach = {h * d} "
                            f"object cells: needs a multiple of n_classes={n_classes}; got "
                            f"spatial={spatial}, reach={d}")
    else:
        n_lag = lag
        if t != 2 * n_lag:
            problems.append(f"layout 'lag' with lag={n_lag} needs T = 2*lag = {2 * n_lag} (the "
                            f"mover's {n_lag} frames, then the objects' {n_lag}); got "
                            f"spatial={spatial}")
        elif (n_lag * h * w) % n_classes:
            problems.append(f"layout 'lag' balances {n_classes} types over lag*H*W = "
                            f"{n_lag * h * w} object places: needs a multiple of n_classes="
                            f"{n_classes}; got spatial={spatial}, lag={n_lag}")
    return problems


def draw_offset_scenes(layout: str, knob: int, n: int, n_classes: int,
                       spatial: tuple[int, int, int], pose_reliability: float,
                       temporal_jitter: float, rng: np.random.Generator) -> Scenes:
    """Scenes of ``n`` clips of layout ``"reach"`` (offset ``knob`` cells in W) or ``"lag"``
    (offset ``knob`` frames in T); the knobs are valid (:func:`knob_problems` is empty).

    The near side (columns 0..d−1, or frames 0..L−1) holds the mover, uniform over its
    places, a distractor and a pose decoy at other near places; the far side (columns
    d..2d−1, or frames L..2L−1) is a dense field in which every type fills the same number
    of places, in a uniformly random order per clip. The label is the type at the mover's
    place shifted by the offset. Nothing at the labelled place moves, and every pooled
    modality is the same whatever the label.
    """
    t, h, w = spatial
    cells = h * w
    if layout == "reach":
        places = cells
        near = np.arange(places) % w < knob
        offset = knob  # d cells to the right
    else:
        places = t * cells
        near = np.arange(places) // cells < knob
        offset = knob * cells  # L frames later, same cell
    near_places = np.flatnonzero(near)
    field = near_places + offset  # the far side, in the same order
    rows = np.arange(n)
    mover = near_places[rng.integers(0, len(near_places), size=n)]
    balanced = np.repeat(np.arange(n_classes), len(field) // n_classes)
    order = np.argsort(rng.random((n, len(field))), axis=1)  # a uniform permutation per clip
    types = np.full((n, places), -1, dtype=np.int64)
    types[:, field] = balanced[order]
    labels = types[rows, mover + offset]
    free = np.broadcast_to(near, (n, places)).copy()
    free[rows, mover] = False
    distractor = random_cell(rng, free)
    decoy = random_cell(rng, free)
    reliable = rng.random(n) < pose_reliability
    pose = np.where(reliable, mover, decoy)
    envelope = 1.0 + temporal_jitter * rng.uniform(-1.0, 1.0, size=(n, t))
    return Scenes(labels, types, mover, distractor, pose, envelope.astype(np.float32),
                  per_frame=layout == "lag")


def random_cell(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """One uniformly random allowed place per clip: int64 ``[n]`` from bool ``[n, P]``."""
    scores = rng.random(allowed.shape)
    scores[~allowed] = np.inf
    return np.argmin(scores, axis=1)
