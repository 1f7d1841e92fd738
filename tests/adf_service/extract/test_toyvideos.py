"""The toy dataset of moving squares: official layouts, exact frames, the motion its class says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from adf_service.extract.decode import read_frames
from adf_service.extract.index import hmdb51_index, ucf101_index
from adf_service.extract.toyvideos import TOY_MOTIONS, ToyDatasetError, toy_direction, write_toy_dataset


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> tuple[Path, Path]:
    return write_toy_dataset(tmp_path_factory.mktemp("hmdb"), layout="hmdb51")


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> tuple[Path, Path]:
    return write_toy_dataset(tmp_path_factory.mktemp("ucf"), layout="ucf101")


@pytest.fixture(scope="module")
def all_motions(tmp_path_factory) -> tuple[Path, Path]:
    return write_toy_dataset(tmp_path_factory.mktemp("all"), layout="ucf101", classes=len(TOY_MOTIONS),
                             clips_per_class=2, frames=24, size=48, seed=5)


def per_class(index) -> dict[str, Counter]:
    counts: dict[str, Counter] = {name: Counter() for name in index.classes}
    for clip in index.clips:
        counts[index.classes[clip.label]][clip.split] += 1
    return counts


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_layout_parses_into_three_train_and_one_test_clip_per_class(hmdb, split):
    index = hmdb51_index(*hmdb, split)
    assert index.classes == ("move_down", "move_left", "move_right")
    assert index.counts() == {"train": 9, "test": 3}
    assert all(c == Counter(train=3, test=1) for c in per_class(index).values())


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_layout_parses_into_three_train_and_one_test_clip_per_class(ucf, split):
    index = ucf101_index(*ucf, split)
    assert index.classes == ("MoveDown", "MoveLeft", "MoveRight")  # classInd.txt is alphabetical
    assert index.counts() == {"train": 9, "test": 3}
    assert all(c == Counter(train=3, test=1) for c in per_class(index).values())
    assert all(clip.clip_id.startswith(f"v_{index.classes[clip.label]}_g") for clip in index.clips)


def test_every_split_tests_different_clips(hmdb, ucf):
    for read, root in ((hmdb51_index, hmdb), (ucf101_index, ucf)):
        tests = [frozenset(c.clip_id for c in read(*root, s).clips if c.split == "test") for s in (1, 2, 3)]
        assert len(set(tests)) == 3


def test_hmdb51_split_files_mark_one_existing_clip_per_class_unused(hmdb):
    videos, splits = hmdb
    for split in (1, 2, 3):
        for class_name in ("move_down", "move_left", "move_right"):
            lines = (splits / f"{class_name}_test_split{split}.txt").read_text().splitlines()
            unused = [line.split()[0] for line in lines if line.split()[1] == "0"]
            assert len(unused) == 1
            assert (videos / class_name / unused[0]).is_file()
            index_ids = {c.clip_id for c in hmdb51_index(videos, splits, split).clips}
            assert Path(unused[0]).stem not in index_ids


@pytest.mark.parametrize("size", [64, 112])
def test_videos_decode_to_exactly_the_frames_written(hmdb, size):
    for clip in hmdb51_index(*hmdb, 1).clips:
        frames = read_frames(clip.path, size=size)
        assert frames.shape == (40, size, size, 3) and frames.dtype == np.uint8


def test_frame_count_and_size_follow_the_parameters(tmp_path):
    videos, splits = write_toy_dataset(tmp_path, classes=1, clips_per_class=2, frames=23, size=32)
    clip = hmdb51_index(videos, splits, 1).clips[0]
    assert read_frames(clip.path, size=32).shape == (23, 32, 32, 3)


def centroid_track(frames: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centroid of the bright square per frame."""
    bright = frames.max(axis=-1) > 120  # the background stays below ~60
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    return np.array([(xs[m].mean(), ys[m].mean()) for m in bright])


def test_the_square_moves_in_its_class_direction(all_motions):
    index = ucf101_index(*all_motions, 1)
    assert len(index.classes) == 8
    for clip in index.clips:
        direction = toy_direction(index.classes[clip.label])
        track = centroid_track(read_frames(clip.path, size=48))
        velocity = np.polyfit(np.arange(len(track)), track, 1)[0]  # (vx, vy) px/frame
        for v, d in zip(velocity, direction, strict=True):
            if d:
                assert np.sign(v) == d and abs(v) > 0.5, (clip.clip_id, velocity)
            else:
                assert abs(v) < 0.1, (clip.clip_id, velocity)


def test_background_is_dark_and_noisy(hmdb):
    frames = read_frames(hmdb51_index(*hmdb, 1).clips[0].path, size=64).astype(float)
    never_square = (frames.max(axis=-1) < 120).all(axis=0)  # [H, W]
    assert never_square.mean() > 0.5
    background = frames[:, never_square]  # [T, pixels, 3]
    assert background.mean() < 60
    assert background.std(axis=0).mean() > 1  # noise changes from frame to frame


def test_same_seed_writes_the_same_videos_another_seed_different_ones(tmp_path, hmdb):
    again = write_toy_dataset(tmp_path / "again", layout="hmdb51")
    other = write_toy_dataset(tmp_path / "other", layout="hmdb51", seed=1)
    rel = Path("move_left") / "toy_move_left_00_0.avi"
    first = read_frames(hmdb[0] / rel, size=64)
    assert np.array_equal(first, read_frames(again[0] / rel, size=64))
    assert not np.array_equal(first, read_frames(other[0] / rel, size=64))


def test_both_layouts_hold_the_same_pixels_for_the_same_seed(hmdb, ucf):
    a = read_frames(hmdb[0] / "move_right" / "toy_move_right_02_0.avi", size=64)
    b = read_frames(ucf[0] / "MoveRight" / "v_MoveRight_g03_c01.avi", size=64)
    assert np.array_equal(a, b)


def test_refuses_to_write_into_a_used_directory(hmdb):
    with pytest.raises(ToyDatasetError, match=f"{hmdb[0]} is not empty"):
        write_toy_dataset(hmdb[0].parent)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layout": "kinetics"}, "layout 'kinetics' not in"),
    ({"classes": 9}, "classes 9: the toy dataset has 1..8 motions"),
    ({"classes": 0}, "classes 0"),
    ({"test_per_class": 0}, "test_per_class 0"),
    ({"test_per_class": 4, "clips_per_class": 4}, "need at least one test and one train clip"),
    ({"frames": 1}, "frames 1"),
    ({"size": 33}, "size 33: must be even"),
])
def test_bad_parameters_are_refused_by_name(tmp_path, kwargs, message):
    with pytest.raises(ToyDatasetError, match=message):
        write_toy_dataset(tmp_path, **kwargs)
    assert not (tmp_path / "videos").exists()


def test_toy_direction_knows_both_naming_styles():
    assert toy_direction("move_up") == toy_direction("MoveUp") == (0, -1)
    assert toy_direction("MoveDownLeft") == (-1, 1)
    with pytest.raises(ToyDatasetError, match="'brush_hair' is not a toy class"):
        toy_direction("brush_hair")
