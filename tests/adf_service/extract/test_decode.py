"""Decoding with PyAV: every frame, RGB, resized; clear errors for what is not a video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from adf_service.extract.decode import VideoDecodeError, read_frames


def encode(path: Path, video: np.ndarray, fps: int = 25) -> Path:
    """uint8 [T, H, W, 3] RGB → an MPEG-4 AVI."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def solid_frames(colours: list[tuple[int, int, int]], height: int, width: int) -> np.ndarray:
    return np.array([np.full((height, width, 3), c, dtype=np.uint8) for c in colours])


def test_every_frame_is_decoded_in_order_as_rgb_at_112(tmp_path):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)] + [(g, g, g) for g in range(40, 240, 10)]
    path = encode(tmp_path / "clip.avi", solid_frames(colours, 48, 80))
    frames = read_frames(path)
    assert frames.shape == (len(colours), 112, 112, 3) and frames.dtype == np.uint8
    means = frames.reshape(len(colours), -1, 3).mean(axis=1)
    assert np.allclose(means, colours, atol=8)  # red stays red: RGB, not BGR


@pytest.mark.parametrize("size", [16, 64, 200])
def test_frames_are_resized_to_the_requested_square(tmp_path, size):
    path = encode(tmp_path / "clip.avi", solid_frames([(100, 150, 200)] * 5, 64, 96))
    frames = read_frames(path, size=size)
    assert frames.shape == (5, size, size, 3)
    assert np.allclose(frames.reshape(-1, 3).mean(axis=0), (100, 150, 200), atol=6)


def test_shrinking_averages_fine_detail_instead_of_aliasing(tmp_path):
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, ::4] = 255  # one bright column in four: a linear resize by 4 would sample the dark ones
    frames = read_frames(encode(tmp_path / "stripes.avi", np.stack([image] * 3)), size=16)
    assert abs(frames.mean() - 255 / 4) < 12
    assert frames.std() < 12


def test_missing_file_is_named(tmp_path):
    with pytest.raises(VideoDecodeError, match=f"{tmp_path / 'gone.avi'}: no such file"):
        read_frames(tmp_path / "gone.avi")


def test_text_file_renamed_avi_is_not_a_video(tmp_path):
    path = tmp_path / "notes.avi"
    path.write_text("brush_hair_0.avi 1\n" * 50)
    with pytest.raises(VideoDecodeError, match=f"{path}: cannot decode"):
        read_frames(path)


def test_file_without_a_video_stream_is_refused(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoDecodeError, match=f"{path}: no video stream"):
        read_frames(path)


def test_video_stream_without_frames_is_refused(tmp_path):
    path = tmp_path / "empty.avi"
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoDecodeError, match=f"{path}: the video stream yields no frames"):
        read_frames(path)


def test_decode_error_is_a_runtime_error_and_size_must_be_positive(tmp_path):
    assert issubclass(VideoDecodeError, RuntimeError)
    with pytest.raises(ValueError, match="size 0"):
        read_frames(tmp_path / "any.avi", size=0)
