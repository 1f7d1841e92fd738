"""Pose modality: the extractor registry, precomputed renderings from files, the zeros placeholder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from adf_service.extract.pose import (
    POSE_EXTRACTORS,
    PoseError,
    PoseExtractor,
    PrecomputedPose,
    ZeroPose,
    create_pose_extractor,
    pose_at,
    register_pose_extractor,
)

# Body-part colours a user's renderer might use (RGB).
HEAD, TORSO, LEFT_ARM = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def clip(n_frames: int = 6, height: int = 16, width: int = 24) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n_frames, height, width, 3), dtype=np.uint8)


def rendering(frame: int, height: int = 8, width: int = 12) -> np.ndarray:
    """[height, width, 3] uint8 RGB: the left half coloured HEAD for even frames, TORSO for odd,
    a LEFT_ARM pixel block in the bottom-right quarter, black elsewhere."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = HEAD if frame % 2 == 0 else TORSO
    image[height // 2 :, 3 * width // 4 :] = LEFT_ARM
    return image


def write_renderings(root: Path, clip_id: str, frames: range, name: str = "{:05d}.png") -> None:
    (root / clip_id).mkdir(parents=True, exist_ok=True)
    for frame in frames:
        assert cv2.imwrite(str(root / clip_id / name.format(frame)), cv2.cvtColor(rendering(frame), cv2.COLOR_RGB2BGR))


def test_precomputed_reads_the_rendering_of_each_sampled_frame_as_rgb_in_unit_range(tmp_path):
    write_renderings(tmp_path, "v_jump_01", range(6))
    extractor = create_pose_extractor("precomputed", root=tmp_path)
    frames = clip(6, height=8, width=12)  # same size as the files: no resize
    pose = pose_at(extractor, "v_jump_01", frames, np.array([0, 3, 3, 4], dtype=np.int64))
    assert pose.shape == (4, 3, 8, 12) and pose.dtype == np.float32
    for row, frame in enumerate([0, 3, 3, 4]):
        np.testing.assert_array_equal(pose[row], rendering(frame).transpose(2, 0, 1) / np.float32(255))
    assert tuple(pose[0, :, 0, 0]) == (1.0, 0.0, 0.0)  # red stays in channel 0: BGR files are converted


def test_precomputed_resizes_to_the_clip_by_nearest_neighbour_keeping_the_part_colours(tmp_path):
    write_renderings(tmp_path, "clip", range(2))
    frames = clip(2, height=16, width=24)  # files are 8×12: upscale ×2
    pose = PrecomputedPose(tmp_path)("clip", frames, np.array([0, 1]))
    assert pose.shape == (2, 3, 16, 24)
    colours = {tuple(c) for c in (pose.transpose(0, 2, 3, 1).reshape(-1, 3) * 255).round().astype(int)}
    assert colours == {HEAD, TORSO, LEFT_ARM, (0, 0, 0)}  # no blended colours from interpolation
    expected = np.repeat(np.repeat(rendering(1), 2, axis=0), 2, axis=1).transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_array_equal(pose[1], expected)


def test_precomputed_frame_offset_maps_index_zero_to_file_one(tmp_path):
    write_renderings(tmp_path, "clip", range(1, 4), name="img_{:05d}.jpg.png")
    extractor = create_pose_extractor(
        "precomputed", root=str(tmp_path), pattern="{clip_id}/img_{frame:05d}.jpg.png", frame_offset=1
    )
    pose = extractor("clip", clip(3, 8, 12), np.array([0, 1]))
    np.testing.assert_array_equal(pose[0], rendering(1).transpose(2, 0, 1) / np.float32(255))
    assert extractor.path("clip", 2) == tmp_path / "clip" / "img_00003.jpg.png"


def test_precomputed_missing_clip_directory_names_the_expected_path(tmp_path):
    extractor = PrecomputedPose(tmp_path)
    expected = tmp_path / "absent_clip" / "00002.png"
    with pytest.raises(PoseError, match="directory") as error:
        extractor("absent_clip", clip(4), np.array([2]))
    assert str(expected) in str(error.value)


def test_precomputed_missing_frame_names_the_expected_path_and_frame(tmp_path):
    write_renderings(tmp_path, "clip", range(3))
    with pytest.raises(PoseError, match="frame 5") as error:
        PrecomputedPose(tmp_path)("clip", clip(6), np.array([0, 5]))
    assert str(tmp_path / "clip" / "00005.png") in str(error.value)


def test_precomputed_unreadable_file_is_reported_with_its_path(tmp_path):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "00000.png").write_bytes(b"not an image")
    with pytest.raises(PoseError, match="cannot read") as error:
        PrecomputedPose(tmp_path)("clip", clip(1), np.array([0]))
    assert str(tmp_path / "clip" / "00000.png") in str(error.value)


@pytest.mark.parametrize("pattern", ["{clip_id}.png", "{frame:05d}.png", "{clip_id}/{frame}_{view}.png"])
def test_precomputed_pattern_must_name_exactly_clip_id_and_frame(tmp_path, pattern):
    with pytest.raises(PoseError, match=r"\{clip_id\} and \{frame\}"):
        PrecomputedPose(tmp_path, pattern=pattern)


def test_precomputed_provenance_records_where_the_renderings_came_from(tmp_path):
    provenance = PrecomputedPose(tmp_path, frame_offset=1).provenance()
    assert provenance == {
        "pose_extractor": "precomputed",
        "pose_root": str(tmp_path),
        "pose_pattern": "{clip_id}/{frame:05d}.png",
        "pose_frame_offset": 1,
        "pose_placeholder": False,
    }


def test_zeros_gives_black_frames_and_says_it_is_a_placeholder():
    extractor = create_pose_extractor("zeros")
    pose = pose_at(extractor, "any", clip(5, 16, 24), np.array([0, 2, 4]))
    assert pose.shape == (3, 3, 16, 24) and pose.dtype == np.float32
    assert not pose.any()
    assert extractor.provenance() == {"pose_extractor": "zeros", "pose_placeholder": True}


def test_builtin_extractors_satisfy_the_protocol(tmp_path):
    assert isinstance(ZeroPose(), PoseExtractor)
    assert isinstance(PrecomputedPose(tmp_path), PoseExtractor)
    assert {"precomputed", "zeros"} <= set(POSE_EXTRACTORS)


def test_unknown_extractor_lists_the_registered_names():
    with pytest.raises(PoseError, match=r"'openpose' not in \{.*precomputed.*zeros.*\}"):
        create_pose_extractor("openpose")


def test_unknown_option_names_the_extractor_and_its_options(tmp_path):
    with pytest.raises(PoseError, match=r"'precomputed' takes options .*frame_offset"):
        create_pose_extractor("precomputed", root=tmp_path, offset=1)


@pytest.fixture
def registered(request):
    """Register test extractors under names that are removed again afterwards."""
    names = []

    def register(name, constructor):
        names.append(name)
        return register_pose_extractor(name)(constructor)

    yield register
    for name in names:
        POSE_EXTRACTORS.pop(name, None)


class Silhouette:
    """A user-written extractor: white where the red channel is bright."""

    name = "test_silhouette"

    def __init__(self, threshold: int = 128):
        self.threshold = threshold

    def __call__(self, clip_id, frames, indices):
        mask = frames[indices, :, :, 0] >= self.threshold  # [N, H, W]
        return np.repeat(mask[:, None], 3, axis=1).astype(np.float32)

    def provenance(self):
        return {"pose_extractor": self.name, "threshold": self.threshold}


def test_a_registered_user_extractor_is_created_by_name_with_its_options(registered):
    registered("test_silhouette", Silhouette)
    extractor = create_pose_extractor("test_silhouette", threshold=200)
    frames = clip(3)
    pose = pose_at(extractor, "c", frames, np.array([1]))
    np.testing.assert_array_equal(pose[0, 0], (frames[1, :, :, 0] >= 200).astype(np.float32))
    assert extractor.provenance()["threshold"] == 200


def test_registering_a_different_extractor_under_a_taken_name_is_refused(registered):
    registered("test_silhouette", Silhouette)
    with pytest.raises(PoseError, match="already registered"):
        register_pose_extractor("test_silhouette")(ZeroPose)


class Broken:
    name = "test_broken"

    def __init__(self, output):
        self.output = output

    def __call__(self, clip_id, frames, indices):
        return self.output

    def provenance(self):
        return {"pose_extractor": self.name}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.zeros((2, 16, 24, 3), np.float32), r"expected \(2, 3, 16, 24\) float32"),  # channels last
        (np.zeros((2, 3, 16, 24), np.uint8), "float32"),
        (np.full((2, 3, 16, 24), 255.0, np.float32), r"expected \[0, 1\]"),
    ],
)
def test_pose_at_rejects_output_that_is_not_the_modality_input(output, message):
    with pytest.raises(PoseError, match=rf"'test_broken'.*clip 'c'.*{message}"):
        pose_at(Broken(output), "c", clip(3), np.array([0, 1]))


def test_pose_at_rejects_indices_outside_the_clip_and_non_uint8_frames():
    with pytest.raises(PoseError, match=r"\[0, 3\)"):
        pose_at(ZeroPose(), "c", clip(3), np.array([3]))
    with pytest.raises(PoseError, match="uint8"):
        pose_at(ZeroPose(), "c", clip(3).astype(np.float32), np.array([0]))
