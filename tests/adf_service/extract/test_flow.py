"""Optical flow modality: direction, magnitude, scaling and conventions on clips of known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from adf_service.extract.flow import (
    FLOW_METHODS,
    FlowConfig,
    FlowError,
    available_flow_methods,
    flow_at,
    resolve_flow_method,
)

SIZE = 64
MARGIN = 8  # flow at the borders sees content entering the frame; judge the interior


def translating_clip(n_frames: int, dx: int, dy: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """[F, size, size, 3] uint8 RGB: smoothed noise moving dx px right and dy px down per frame."""
    rng = np.random.default_rng(seed)
    pad = size + 2 * n_frames * max(abs(dx), abs(dy)) + 2
    texture = cv2.GaussianBlur(rng.random((pad, pad, 3)).astype(np.float32), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    y0 = x0 = pad // 2 - size // 2
    # Content at x in frame t is at x + dx in frame t + 1, so the window slides the other way.
    return np.stack([texture[y0 - t * dy : y0 - t * dy + size, x0 - t * dx : x0 - t * dx + size]
                     for t in range(n_frames)])


def interior_mean(flow: np.ndarray) -> np.ndarray:
    """[N, 2, H, W] → [2] mean (x, y) over the interior of all frames."""
    return flow[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN].mean(axis=(0, 2, 3))


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_rightward_upward_motion_gives_positive_x_and_negative_y(method):
    clip = translating_clip(4, dx=2, dy=-1)
    flow = flow_at(clip, np.array([0, 1, 2]), FlowConfig(method=method, bound=20.0))
    mean_px = interior_mean(flow) * 20.0
    np.testing.assert_allclose(mean_px, [2.0, -1.0], atol=0.15)


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_leftward_downward_motion_gives_negative_x_and_positive_y(method):
    clip = translating_clip(3, dx=-3, dy=2, seed=1)
    flow = flow_at(clip, np.array([0]), FlowConfig(method=method, bound=10.0))
    np.testing.assert_allclose(interior_mean(flow) * 10.0, [-3.0, 2.0], atol=0.2)


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_still_clip_has_near_zero_flow(method):
    clip = np.repeat(translating_clip(1, 0, 0), 3, axis=0)
    flow = flow_at(clip, np.array([0, 1]), FlowConfig(method=method))
    assert np.abs(flow).max() < 0.01


def test_flow_beyond_the_bound_is_clipped_to_unit_range():
    clip = translating_clip(3, dx=3, dy=-3)
    flow = flow_at(clip, np.array([0, 1]), FlowConfig(method="farneback", bound=1.0))
    assert flow.min() >= -1.0 and flow.max() <= 1.0
    interior = flow[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.mean(interior[:, 0] == 1.0) > 0.95  # 3 px right saturates at +1
    assert np.mean(interior[:, 1] == -1.0) > 0.95  # 3 px up saturates at -1


def test_flow_is_divided_by_the_bound():
    clip = translating_clip(3, dx=2, dy=0)
    wide = flow_at(clip, np.array([0]), FlowConfig(method="farneback", bound=20.0))
    narrow = flow_at(clip, np.array([0]), FlowConfig(method="farneback", bound=5.0))
    np.testing.assert_allclose(narrow, wide * 4.0, atol=1e-5)


def test_output_is_channels_first_float32_per_sampled_index():
    clip = translating_clip(5, dx=1, dy=1)[:, :48]  # non-square: H=48, W=64
    flow = flow_at(clip, np.array([4, 0, 2], dtype=np.int64), FlowConfig(method="farneback"))
    assert flow.shape == (3, 2, 48, SIZE)
    assert flow.dtype == np.float32


def test_last_frame_uses_the_pair_before_it_and_repeats_share_one_result():
    clip = translating_clip(4, dx=1, dy=0)
    flow = flow_at(clip, np.array([3, 2, 2, 0]), FlowConfig(method="farneback"))
    np.testing.assert_array_equal(flow[0], flow[1])  # frame 3 (last) → pair (2, 3)
    np.testing.assert_array_equal(flow[1], flow[2])
    assert not np.array_equal(flow[0], np.zeros_like(flow[0]))


def test_flow_at_index_i_is_the_motion_from_i_to_i_plus_1():
    moving = translating_clip(2, dx=2, dy=0)
    clip = np.concatenate([moving, moving[-1:], moving[-1:]])  # motion only between frames 0 and 1
    flow = flow_at(clip, np.array([0, 1, 2]), FlowConfig(method="farneback", bound=20.0))
    assert interior_mean(flow[:1])[0] * 20.0 == pytest.approx(2.0, abs=0.15)
    assert np.abs(flow[1:]).max() < 0.01


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_one_frame_clip_gives_zeros(method):
    flow = flow_at(translating_clip(1, 0, 0), np.array([0, 0, 0]), FlowConfig(method=method))
    assert flow.shape == (3, 2, SIZE, SIZE)
    assert not flow.any()


def test_unknown_method_is_rejected_with_the_allowed_values():
    with pytest.raises(FlowError, match=r"'raft'.*auto.*tvl1.*farneback"):
        FlowConfig(method="raft")
    with pytest.raises(FlowError, match=r"'raft'.*auto.*tvl1.*farneback"):
        resolve_flow_method("raft")


def test_non_positive_bound_is_rejected():
    with pytest.raises(FlowError, match="bound"):
        FlowConfig(bound=0.0)


def test_auto_prefers_tvl1_when_the_contrib_build_is_installed():
    assert "tvl1" in available_flow_methods()  # the project pins opencv-contrib-python-headless
    assert resolve_flow_method("auto") == "tvl1"
    assert resolve_flow_method("farneback") == "farneback"


def test_without_the_contrib_build_auto_falls_back_and_tvl1_says_what_to_install(monkeypatch):
    # The one thing this machine cannot be without uninstalling: an OpenCV lacking cv2.optflow.
    monkeypatch.delattr(cv2.optflow, "DualTVL1OpticalFlow_create")
    assert available_flow_methods() == ("farneback",)
    assert resolve_flow_method("auto") == "farneback"
    with pytest.raises(FlowError, match="opencv-contrib-python-headless"):
        resolve_flow_method("tvl1")


def test_provenance_records_the_resolved_method_and_bound():
    assert FlowConfig(bound=15).provenance() == {"flow_method": "tvl1", "flow_bound": 15.0}
    assert FlowConfig(method="farneback").provenance() == {"flow_method": "farneback", "flow_bound": 20.0}


@pytest.mark.parametrize(
    ("frames", "indices", "message"),
    [
        (np.zeros((2, 8, 8), np.uint8), np.array([0]), r"\[F, H, W, 3\]"),
        (np.zeros((2, 8, 8, 3), np.float32), np.array([0]), "uint8"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.array([2]), r"\[0, 2\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.array([-1]), r"\[0, 2\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.array([0.5]), "integer"),
    ],
)
def test_malformed_input_names_what_was_expected(frames, indices, message):
    with pytest.raises(FlowError, match=message):
        flow_at(frames, indices, FlowConfig(method="farneback"))
