"""Video decoding with PyAV: every frame of a clip as RGB, resized to a square.

HMDB51 and UCF101 clips are short (a few hundred frames), so a whole clip at 112×112 is a
few MB and is decoded in one go; frame sampling (:mod:`.sampling`) then indexes into it.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = ["FRAME_SIZE", "VideoDecodeError", "read_frames"]

FRAME_SIZE = 112  # clips are resized to 112×112 before the backbones (thesis §5.1.3)


class VideoDecodeError(RuntimeError):
    """A video that cannot be decoded; the message names the file and the reason."""


def read_frames(path: Path | str, size: int = FRAME_SIZE) -> np.ndarray:
    """uint8 [N, size, size, 3] RGB: every frame of the first video stream of ``path``.

    Frames are resized to ``size``×``size`` (aspect ratio not kept) with ``cv2.INTER_AREA``
    when shrinking (less aliasing) and ``cv2.INTER_LINEAR`` when growing.
    """
    path = Path(path)
    if size < 1:
        raise ValueError(f"size {size}: must be ≥ 1")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # one converter for the clip: VideoFrame.to_ndarray(format=...) builds a fresh
            # swscale context per frame, which costs more than decoding the frame
            to_rgb = VideoReformatter()
            for frame in container.decode(stream):
                frames.append(_resize(to_rgb.reformat(frame, format="rgb24").to_ndarray(), size))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: cannot decode ({e})") from e
    if not frames:
        raise VideoDecodeError(f"{path}: the video stream yields no frames")
    return np.stack(frames)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] → [size, size, 3]."""
    height, width = image.shape[:2]
    if height == width == size:
        return image
    shrinking = size * size < height * width
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
