"""A tiny labelled video dataset of moving squares, in the official HMDB51 or UCF101 layout.

Class k is one motion (a bright square moving right, left, down, up, then the diagonals)
on a dark textured, slightly noisy background, so optical flow separates the classes and
the whole extraction pipeline (index → decode → sample → flow/pose → backbones) can run
end to end in tests and demos without the real datasets.

The videos are real MPEG-4 Part 2 AVI files (FFmpeg's native ``mpeg4`` encoder, the codec
family of the HMDB51/UCF101 originals; always present in PyAV's wheels), yuv420p, 25 fps,
no B-frames, so a decoder returns exactly the frames written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from adf_service.extract.index import SPLIT_NUMBERS

__all__ = ["TOY_CODEC", "TOY_MOTIONS", "ToyDatasetError", "toy_direction", "write_toy_dataset"]

TOY_CODEC = "mpeg4"
_FPS = 25
_BIT_RATE = 4_000_000  # far above what 64×64 needs: the encoder sits at its best quantizer


@dataclass(frozen=True)
class ToyMotion:
    """One class: its names in either layout and its direction (dx, dy), +y pointing down."""

    hmdb51_name: str
    ucf101_name: str
    direction: tuple[int, int]


TOY_MOTIONS = (
    ToyMotion("move_right", "MoveRight", (1, 0)),
    ToyMotion("move_left", "MoveLeft", (-1, 0)),
    ToyMotion("move_down", "MoveDown", (0, 1)),
    ToyMotion("move_up", "MoveUp", (0, -1)),
    ToyMotion("move_down_right", "MoveDownRight", (1, 1)),
    ToyMotion("move_up_left", "MoveUpLeft", (-1, -1)),
    ToyMotion("move_down_left", "MoveDownLeft", (-1, 1)),
    ToyMotion("move_up_right", "MoveUpRight", (1, -1)),
)


class ToyDatasetError(ValueError):
    """Parameters that cannot make a toy dataset, or a target directory already in use."""


def toy_direction(class_name: str) -> tuple[int, int]:
    """(dx, dy) of a toy class, by its HMDB51 (``move_up``) or UCF101 (``MoveUp``) name."""
    for motion in TOY_MOTIONS:
        if class_name in (motion.hmdb51_name, motion.ucf101_name):
            return motion.direction
    raise ToyDatasetError(f"class {class_name!r} is not a toy class; known: "
                          f"{', '.join(m.hmdb51_name for m in TOY_MOTIONS)} (or their UCF101 names)")


def write_toy_dataset(root: Path | str, *, layout: Literal["hmdb51", "ucf101"] = "hmdb51",
                      classes: int = 3, clips_per_class: int = 4, test_per_class: int = 1,
                      frames: int = 40, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/videos`` and ``root/splits``; return ``(videos_dir, splits_dir)``.

    Every split N ∈ {1, 2, 3} lists ``clips_per_class`` clips per class, ``test_per_class``
    of them test (a different choice per split) and the rest train. The HMDB51 layout also
    writes one more clip per class that every split marks ``0`` (unused), as the real files do.
    Videos are ``frames`` frames of ``size``×``size``; the pixels depend only on
    (seed, class, clip number), not on the layout.
    """
    _check(layout, classes, clips_per_class, test_per_class, frames, size)
    root = Path(root)
    videos, splits = root / "videos", root / "splits"
    for directory in (videos, splits):
        if directory.exists() and any(directory.iterdir()):
            raise ToyDatasetError(f"{directory} is not empty: write the toy dataset to a fresh root")
        directory.mkdir(parents=True, exist_ok=True)
    motions = TOY_MOTIONS[:classes]
    n_clips = clips_per_class + (1 if layout == "hmdb51" else 0)
    names: dict[ToyMotion, list[str]] = {}
    for k, motion in enumerate(motions):
        class_name = motion.hmdb51_name if layout == "hmdb51" else motion.ucf101_name
        (videos / class_name).mkdir()
        names[motion] = [_clip_file_name(layout, class_name, j) for j in range(n_clips)]
        for j, file_name in enumerate(names[motion]):
            rng = np.random.default_rng([seed, k, j])
            _write_video(videos / class_name / file_name, _render_clip(motion.direction, frames, size, rng))
    for split in SPLIT_NUMBERS:
        test = {((split - 1) * test_per_class + i) % clips_per_class for i in range(test_per_class)}
        if layout == "hmdb51":
            _write_hmdb51_split(splits, split, names, test, clips_per_class)
        else:
            _write_ucf101_split(splits, split, names, test)
    return videos, splits


def _check(layout: str, classes: int, clips_per_class: int, test_per_class: int, frames: int,
           size: int) -> None:
    if layout not in ("hmdb51", "ucf101"):
        raise ToyDatasetError(f"layout {layout!r} not in {{hmdb51, ucf101}}")
    if not 1 <= classes <= len(TOY_MOTIONS):
        raise ToyDatasetError(f"classes {classes}: the toy dataset has 1..{len(TOY_MOTIONS)} motions")
    if not 1 <= test_per_class < clips_per_class:
        raise ToyDatasetError(f"test_per_class {test_per_class}, clips_per_class {clips_per_class}: "
                              "need at least one test and one train clip per class")
    if frames < 2:
        raise ToyDatasetError(f"frames {frames}: a motion needs at least 2 frames")
    if size < 16 or size % 2:
        raise ToyDatasetError(f"size {size}: must be even (yuv420p) and ≥ 16")


def _clip_file_name(layout: str, class_name: str, j: int) -> str:
    if layout == "hmdb51":
        return f"toy_{class_name}_{j:02d}_0.avi"
    return f"v_{class_name}_g{j + 1:02d}_c01.avi"  # one group per clip


def _write_hmdb51_split(splits: Path, split: int, names: dict[ToyMotion, list[str]], test: set[int],
                        clips_per_class: int) -> None:
    for motion, files in names.items():
        codes = ["2" if j in test else "1" if j < clips_per_class else "0" for j in range(len(files))]
        lines = "".join(f"{f} {c} \n" for f, c in zip(files, codes, strict=True))  # trailing blank as in the real files
        (splits / f"{motion.hmdb51_name}_test_split{split}.txt").write_text(lines)


def _write_ucf101_split(splits: Path, split: int, names: dict[ToyMotion, list[str]], test: set[int]) -> None:
    # classInd.txt is alphabetical, as the real one is; labels follow it
    ordered = sorted(names, key=lambda m: m.ucf101_name)
    if split == SPLIT_NUMBERS[0]:
        (splits / "classInd.txt").write_text("".join(f"{i} {m.ucf101_name}\n" for i, m in enumerate(ordered, 1)))
    train, test_lines = [], []
    for number, motion in enumerate(ordered, 1):
        for j, file_name in enumerate(names[motion]):
            path = f"{motion.ucf101_name}/{file_name}"
            if j in test:
                test_lines.append(path)
            else:
                train.append(f"{path} {number}")
    (splits / f"trainlist{split:02d}.txt").write_text("".join(f"{line}\n" for line in train))
    (splits / f"testlist{split:02d}.txt").write_text("".join(f"{line}\n" for line in test_lines))


def _render_clip(direction: tuple[int, int], frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, size, size, 3] RGB: a bright square crossing a dark textured background."""
    side = max(4, size // 6)
    margin = 2
    room = size - side - 2 * margin  # positions a square's corner can take: margin..margin+room
    speed = rng.uniform(0.6, 0.9) * room / (frames - 1)  # px per frame along each moving axis
    travel = speed * (frames - 1)
    corner = np.empty(2)
    for axis, d in enumerate(direction):
        if d == 0:
            corner[axis] = margin + rng.uniform(0, room)
        else:
            start = margin + rng.uniform(0, room - travel)
            corner[axis] = start if d > 0 else 2 * margin + room - start
    background = rng.integers(10, 50, size=(size, size, 3)).astype(np.int16)
    colour = rng.integers(180, 256, size=3).astype(np.int16)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        image = background + rng.integers(-4, 5, size=(size, size, 3))  # sensor noise
        x, y = np.rint(corner + speed * t * np.asarray(direction)).astype(int)
        image[y:y + side, x:x + side] = colour
        video[t] = np.clip(image, 0, 255)
    return video


def _write_video(path: Path, video: np.ndarray) -> None:
    """[T, H, W, 3] uint8 RGB → an MPEG-4 AVI at 25 fps."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(TOY_CODEC, rate=_FPS)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = _BIT_RATE
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder
