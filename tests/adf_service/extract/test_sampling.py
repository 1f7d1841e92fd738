"""Frame sampling (docs/design.md §6): loop short clips, trim to a multiple of 64, 64 segments."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adf_service.extract.sampling import N_SEGMENTS, sampled_frames, segment_layout, view_rng

n_frames = st.integers(min_value=1, max_value=1000)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def looped_positions(indices: np.ndarray, n: int) -> np.ndarray:
    """Position of each sampled frame in the looped clip: the one in segment k's window that shows it."""
    layout = segment_layout(n)
    lo = layout.segment_starts
    return lo + (indices - lo) % n


def test_n_segments_is_the_thesis_64():
    assert N_SEGMENTS == 64


@given(n=n_frames, train=st.booleans(), seed=seeds)
def test_samples_one_in_range_index_per_segment(n, train, seed):
    indices = sampled_frames(n, train=train, rng=np.random.default_rng(seed))
    assert indices.shape == (64,) and indices.dtype == np.int64
    assert indices.min() >= 0 and indices.max() < n


@given(n=n_frames, train=st.booleans(), seed=seeds)
def test_every_sample_falls_inside_its_own_segment_in_temporal_order(n, train, seed):
    indices = sampled_frames(n, train=train, rng=np.random.default_rng(seed))
    layout = segment_layout(n)
    q = looped_positions(indices, n)
    assert np.all(q < layout.segment_starts + layout.segment_length)
    assert np.all(np.diff(q) > 0)
    if n >= 64:  # not looped: the original indices themselves are in order
        assert np.array_equal(q, indices)
        assert np.all(np.diff(indices) >= 0)


@given(n=n_frames, seed=seeds)
def test_evaluation_frames_are_equidistant_with_one_offset(n, seed):
    indices = sampled_frames(n, train=False, rng=np.random.default_rng(seed))
    layout = segment_layout(n)
    q = looped_positions(indices, n)
    assert np.all(np.diff(q) == layout.segment_length)
    offset = q[0] - layout.trim_start
    assert 0 <= offset < layout.segment_length


@given(n=n_frames)
def test_trimming_is_the_fewest_frames_split_between_start_and_end(n):
    layout = segment_layout(n)
    assert layout.trim_start <= layout.trim_end <= layout.trim_start + 1
    assert layout.trim_start + layout.trim_end < 64
    assert layout.trim_start + 64 * layout.segment_length + layout.trim_end == layout.looped_length
    assert layout.segment_length >= 1


@given(n=n_frames)
def test_clip_is_looped_whole_only_when_shorter_than_64_frames(n):
    layout = segment_layout(n)
    if n >= 64:
        assert layout.looped_length == n
    else:
        assert layout.looped_length % n == 0
        assert 64 <= layout.looped_length < 64 + n  # the fewest repeats that reach 64


@given(n=n_frames, train=st.booleans(), seed=seeds, view=st.integers(0, 20))
@settings(max_examples=50)
def test_same_seed_clip_and_view_give_the_same_indices(n, train, seed, view):
    first = sampled_frames(n, train=train, rng=view_rng(seed, "v_ApplyEyeMakeup_g08_c01", view))
    again = sampled_frames(n, train=train, rng=view_rng(seed, "v_ApplyEyeMakeup_g08_c01", view))
    assert np.array_equal(first, again)


@given(n=st.integers(min_value=128, max_value=1000), seed=seeds)  # ≥ 2 frames per segment
@settings(max_examples=50)
def test_different_views_sample_different_training_frames(n, seed):
    views = [sampled_frames(n, train=True, rng=view_rng(seed, "clip", v)) for v in range(2)]
    assert not np.array_equal(*views)


def test_130_frames_trim_one_at_each_end_and_take_every_second_frame():
    layout = segment_layout(130)
    assert (layout.looped_length, layout.trim_start, layout.trim_end, layout.segment_length) == (130, 1, 1, 2)
    seen = {tuple(sampled_frames(130, train=False, rng=np.random.default_rng(s))) for s in range(20)}
    assert seen == {tuple(range(1, 129, 2)), tuple(range(2, 130, 2))}


def test_short_clip_is_looped_before_trimming():
    layout = segment_layout(10)  # looped 7 times to 70 frames; r = 6, trim 3 and 3, s = 1
    assert (layout.looped_length, layout.trim_start, layout.trim_end, layout.segment_length) == (70, 3, 3, 1)
    for train in (True, False):
        indices = sampled_frames(10, train=train, rng=np.random.default_rng(0))
        assert indices.tolist() == [(3 + k) % 10 for k in range(64)]


@pytest.mark.parametrize(("n", "expected"), [
    (1, [0] * 64),
    (64, list(range(64))),
    (65, list(range(64))),  # r = 1: the one trimmed frame is at the end
    (63, [(31 + k) % 63 for k in range(64)]),  # looped to 126, r = 62: 31 and 31
])
def test_clips_with_one_frame_per_segment_are_fully_determined(n, expected):
    assert sampled_frames(n, train=True, rng=np.random.default_rng(0)).tolist() == expected


def test_200_frames_are_trimmed_four_and_four_into_segments_of_three():
    layout = segment_layout(200)
    assert (layout.trim_start, layout.trim_end, layout.segment_length) == (4, 4, 3)
    indices = sampled_frames(200, train=True, rng=np.random.default_rng(1))
    assert np.all((indices - 4) // 3 == np.arange(64))


def test_training_draws_frames_independently_per_segment():
    indices = sampled_frames(1000, train=True, rng=np.random.default_rng(0))
    offsets = indices - segment_layout(1000).segment_starts
    assert len(set(offsets.tolist())) > 1


def test_other_segment_counts_follow_the_same_rules():
    indices = sampled_frames(100, train=False, rng=np.random.default_rng(0), n_segments=16)
    assert indices.shape == (16,)
    assert np.all(np.diff(indices) == 6)  # r = 4: trim 2 and 2, s = 6


@pytest.mark.parametrize("n", [0, -5])
def test_a_clip_without_frames_is_refused(n):
    with pytest.raises(ValueError, match=f"n_frames {n}"):
        sampled_frames(n, train=True, rng=np.random.default_rng(0))


def test_view_rng_depends_on_seed_clip_and_view():
    def draw(seed, clip, view):
        return view_rng(seed, clip, view).integers(0, 2**62, size=4).tolist()
    base = draw(0, "a", 0)
    assert draw(0, "a", 0) == base
    assert draw(1, "a", 0) != base
    assert draw(0, "b", 0) != base
    assert draw(0, "a", 1) != base


def test_view_rng_is_the_same_in_processes_with_different_hash_seeds():
    code = ("from adf_service.extract.sampling import view_rng;"
            "print(view_rng(3, 'brush_hair_April_09_brush_hair_u_nm_np1_ba_goo_0', 2).integers(0, 2**62))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout.strip()
        for hash_seed in ("1", "2")
    }
    here = view_rng(3, "brush_hair_April_09_brush_hair_u_nm_np1_ba_goo_0", 2).integers(0, 2**62)
    assert outputs == {str(here)}


def test_view_rng_refuses_negative_seed_or_view():
    with pytest.raises(ValueError, match="seed -1"):
        view_rng(-1, "a", 0)
    with pytest.raises(ValueError, match="view -2"):
        view_rng(0, "a", -2)
