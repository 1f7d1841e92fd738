"""Dataset indexes from the official HMDB51 / UCF101 split files, and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adf_service.extract import index as index_module
from adf_service.extract.index import DatasetIndexError, VideoClip, dataset_index, hmdb51_index, ucf101_index
from adf_service.features.manifest import TRAIN_SPLIT


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def touch_videos(videos: Path, *relative: str) -> None:
    for rel in relative:
        write(videos / rel, "")


# --- HMDB51 ---------------------------------------------------------------------------------

HMDB_SPLIT1 = {
    # "kick" and "kick_ball" sort differently as file names than as class names
    "kick_ball": "ball_a.avi 1\nball_b.avi 2\nball_c.avi 0\n",
    "kick": "kick_a.avi 2\nkick_b.avi 1\nkick_c.avi 1\n",
    "brush_hair": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\nhair_b.avi 2\n",
}


@pytest.fixture
def hmdb(tmp_path: Path) -> tuple[Path, Path]:
    videos, splits = tmp_path / "videos", tmp_path / "splits"
    for class_name, text in HMDB_SPLIT1.items():
        write(splits / f"{class_name}_test_split1.txt", text)
        for line in text.splitlines():
            touch_videos(videos, f"{class_name}/{line.split()[0]}")
    write(splits / "other_class_test_split2.txt", "x.avi 1\n")  # another split: ignored
    return videos, splits


def test_hmdb51_index_reads_classes_labels_and_splits(hmdb):
    videos, splits = hmdb
    index = hmdb51_index(videos, splits, 1)
    assert index.name == "hmdb51-split1"
    assert index.classes == ("brush_hair", "kick", "kick_ball")
    by_id = {c.clip_id: c for c in index.clips}
    assert by_id["kick_a"] == VideoClip("kick_a", videos / "kick" / "kick_a.avi", 1, "test")
    assert by_id["ball_a"] == VideoClip("ball_a", videos / "kick_ball" / "ball_a.avi", 2, "train")
    assert by_id["April_09_brush_hair_u_nm_np1_ba_goo_0"].label == 0
    assert "ball_c" not in by_id  # 0 = unused in this split
    assert index.counts() == {"train": 4, "test": 3}


def test_hmdb51_tolerates_crlf_blank_lines_and_trailing_whitespace(hmdb):
    videos, splits = hmdb
    write(splits / "kick_test_split1.txt", "\r\nkick_a.avi 2 \r\n\r\n  kick_b.avi 1\t\r\nkick_c.avi 1   \r\n\r\n")
    assert hmdb51_index(videos, splits, 1).counts() == {"train": 4, "test": 3}


@pytest.mark.parametrize("split", [0, 4, True])
def test_split_number_outside_1_to_3_is_refused(hmdb, split):
    with pytest.raises(DatasetIndexError, match=re.escape(f"split {split!r} not in {{1, 2, 3}}")):
        hmdb51_index(*hmdb, split)


def test_missing_hmdb51_split_files_name_the_pattern_and_directory(hmdb):
    videos, splits = hmdb
    with pytest.raises(DatasetIndexError, match=re.escape(f"'*_test_split3.txt' in {splits}")):
        hmdb51_index(videos, splits, 3)


@pytest.mark.parametrize(("line", "text"), [
    (2, "kick_a.avi 2\nkick_b.avi 3\nkick_c.avi 1\n"),
    (1, "kick_a.avi\nkick_b.avi 1\n"),
    (4, "kick_a.avi 2\nkick_b.avi 1\n\nkick_c.avi 1 extra\n"),
    (1, "sub/kick_a.avi 2\n"),
])
def test_malformed_hmdb51_line_names_file_and_line(hmdb, line, text):
    videos, splits = hmdb
    path = write(splits / "kick_test_split1.txt", text)
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}:{line}: expected 'name.avi 1|2|0'")):
        hmdb51_index(videos, splits, 1)


def test_hmdb51_clip_in_train_and_test_is_refused_naming_both_lines(hmdb):
    videos, splits = hmdb
    path = write(splits / "kick_test_split1.txt", "kick_a.avi 2\nkick_b.avi 1\nkick_a.avi 1\n")
    with pytest.raises(DatasetIndexError, match=re.escape(
            f"{path}:3: clip 'kick_a' is listed as train here and as test at {path}:1")):
        hmdb51_index(videos, splits, 1)


def test_hmdb51_duplicate_clip_id_across_classes_is_refused(hmdb):
    videos, splits = hmdb
    write(splits / "kick_test_split1.txt", "kick_a.avi 2\nball_b.avi 2\n")
    touch_videos(videos, "kick/ball_b.avi")
    with pytest.raises(DatasetIndexError, match=re.escape(
            f"{splits / 'kick_ball_test_split1.txt'}:2: duplicate clip id 'ball_b', "
            f"already listed at {splits / 'kick_test_split1.txt'}:2")):
        hmdb51_index(videos, splits, 1)


def test_missing_videos_are_listed_up_to_five_with_the_total(hmdb):
    videos, splits = hmdb
    names = [f"gone_{i}.avi" for i in range(7)]
    path = write(splits / "kick_test_split1.txt", "kick_a.avi 2\n" + "".join(f"{n} 1\n" for n in names))
    with pytest.raises(DatasetIndexError) as error:
        hmdb51_index(videos, splits, 1)
    message = str(error.value)
    assert "7 listed video(s) not on disk" in message and "and 2 more" in message
    assert f"{videos / 'kick' / 'gone_0.avi'} (listed at {path}:2)" in message
    assert "gone_4.avi" in message and "gone_5.avi" not in message


def test_unused_clips_need_not_exist_on_disk(hmdb):
    videos, splits = hmdb
    (videos / "kick_ball" / "ball_c.avi").unlink()
    assert hmdb51_index(videos, splits, 1).counts() == {"train": 4, "test": 3}


def test_missing_videos_directory_is_named(hmdb, tmp_path):
    with pytest.raises(DatasetIndexError, match=re.escape(f"videos directory {tmp_path / 'nope'} does not")):
        hmdb51_index(tmp_path / "nope", hmdb[1], 1)


def test_split_without_test_clips_is_refused(tmp_path):
    splits = tmp_path / "splits"
    write(splits / "kick_test_split1.txt", "a.avi 1\nb.avi 0\n")
    touch_videos(tmp_path / "videos", "kick/a.avi")
    with pytest.raises(DatasetIndexError, match="no test clips"):
        hmdb51_index(tmp_path / "videos", splits, 1)


# --- UCF101 ---------------------------------------------------------------------------------

CLASS_IND = "1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n"
TRAIN = ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
         "Archery/v_Archery_g08_c01.avi\n"  # label optional
         "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n")
TEST = "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c01.avi\n"


@pytest.fixture
def ucf(tmp_path: Path) -> tuple[Path, Path]:
    videos, splits = tmp_path / "videos", tmp_path / "splits"
    write(splits / "classInd.txt", CLASS_IND)
    write(splits / "trainlist01.txt", TRAIN)
    write(splits / "testlist01.txt", TEST)
    touch_videos(videos, *(line.split()[0] for line in (TRAIN + TEST).splitlines()))
    return videos, splits


def test_ucf101_index_reads_classes_labels_and_splits(ucf):
    videos, splits = ucf
    index = ucf101_index(videos, splits, 1)
    assert index.name == "ucf101-split1"
    assert index.classes == ("ApplyEyeMakeup", "Archery", "HandstandPushups")
    assert index.clips[1] == VideoClip("v_Archery_g08_c01", videos / "Archery" / "v_Archery_g08_c01.avi",
                                       1, "train")
    assert index.clips[4] == VideoClip(
        "v_HandStandPushups_g01_c01", videos / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi", 2, "test")
    assert index.counts() == {"train": 3, "test": 2}


def test_ucf101_classes_follow_class_ind_numbers_not_the_alphabet(ucf):
    videos, splits = ucf
    write(splits / "classInd.txt", "2 ApplyEyeMakeup\r\n\r\n1 Archery  \r\n3 HandstandPushups\r\n")
    write(splits / "trainlist01.txt", TRAIN.replace(".avi 1\n", ".avi 2\n"))
    index = ucf101_index(videos, splits, 1)
    assert index.classes == ("Archery", "ApplyEyeMakeup", "HandstandPushups")
    assert index.clips[0].label == 1


def test_missing_ucf101_list_names_the_file_and_directory(ucf):
    videos, splits = ucf
    with pytest.raises(DatasetIndexError, match=re.escape(f"trainlist02.txt, testlist02.txt in {splits}")):
        ucf101_index(videos, splits, 2)


def test_unknown_class_in_train_list_names_file_and_line(ucf):
    videos, splits = ucf
    path = write(splits / "trainlist01.txt", TRAIN + "Basketball/v_Basketball_g08_c01.avi 4\n")
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}:4: class 'Basketball' is not in")):
        ucf101_index(videos, splits, 1)


def test_unknown_class_in_test_list_names_file_and_line(ucf):
    videos, splits = ucf
    path = write(splits / "testlist01.txt", "\nBasketball/v_Basketball_g01_c01.avi\n")
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}:2: class 'Basketball'")):
        ucf101_index(videos, splits, 1)


def test_label_that_disagrees_with_the_directory_is_refused(ucf):
    videos, splits = ucf
    path = write(splits / "trainlist01.txt", TRAIN.replace("c01.avi 3", "c01.avi 2"))
    with pytest.raises(DatasetIndexError, match=re.escape(
            f"{path}:3: label 2 disagrees with directory 'HandstandPushups', class number 3")):
        ucf101_index(videos, splits, 1)


@pytest.mark.parametrize("bad", ["v_Archery_g08_c01.avi 2", "Archery/v_Archery_g08_c01.avi two",
                                 "Archery/v_Archery_g08_c01.avi 2 x", "a/Archery/v.avi 2"])
def test_malformed_ucf101_line_names_file_and_line(ucf, bad):
    videos, splits = ucf
    path = write(splits / "trainlist01.txt", TRAIN + bad + "\n")
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}:4: expected '<Class>/<name>.avi [label]'")):
        ucf101_index(videos, splits, 1)


@pytest.mark.parametrize(("text", "message"), [
    ("1 ApplyEyeMakeup\nArchery\n", ":2: expected '<number ≥ 1> <ClassName>'"),
    ("1 ApplyEyeMakeup\n0 Archery\n", ":2: expected '<number ≥ 1> <ClassName>'"),
    ("1 ApplyEyeMakeup\n1 Archery\n", ":2: class number 1 already given to 'ApplyEyeMakeup'"),
    ("1 ApplyEyeMakeup\n2 ApplyEyeMakeup\n", ":2: class 'ApplyEyeMakeup' already listed at"),
    ("1 ApplyEyeMakeup\n3 Archery\n", ": class numbers must be 1..2; missing [2]"),
    ("\n\n", ": lists no classes"),
])
def test_bad_class_ind_is_refused_naming_the_file(ucf, text, message):
    videos, splits = ucf
    path = write(splits / "classInd.txt", text)
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}{message}")):
        ucf101_index(videos, splits, 1)


def test_ucf101_clip_in_train_and_test_is_refused(ucf):
    videos, splits = ucf
    test = write(splits / "testlist01.txt", TEST + "Archery/v_Archery_g08_c01.avi\n")
    with pytest.raises(DatasetIndexError, match=re.escape(
            f"{test}:3: clip 'v_Archery_g08_c01' is listed as test here and as train at "
            f"{splits / 'trainlist01.txt'}:2")):
        ucf101_index(videos, splits, 1)


def test_ucf101_duplicate_clip_id_is_refused(ucf):
    videos, splits = ucf
    path = write(splits / "trainlist01.txt", TRAIN + "Archery/v_Archery_g08_c01.avi 2\n")
    with pytest.raises(DatasetIndexError, match=re.escape(f"{path}:4: duplicate clip id 'v_Archery_g08_c01', "
                                                          f"already listed at {path}:2")):
        ucf101_index(videos, splits, 1)


def test_ucf101_missing_video_is_named_with_its_list_line(ucf):
    videos, splits = ucf
    (videos / "Archery" / "v_Archery_g08_c01.avi").unlink()
    with pytest.raises(DatasetIndexError, match=re.escape(
            f"1 listed video(s) not on disk: {videos / 'Archery' / 'v_Archery_g08_c01.avi'} "
            f"(listed at {splits / 'trainlist01.txt'}:2)")):
        ucf101_index(videos, splits, 1)


# --- dispatch -------------------------------------------------------------------------------

def test_dataset_index_dispatches_by_name(hmdb, ucf):
    assert dataset_index("hmdb51", *hmdb, 1) == hmdb51_index(*hmdb, 1)
    assert dataset_index("ucf101", *map(str, ucf), 1) == ucf101_index(*ucf, 1)


def test_unknown_dataset_is_refused_with_the_allowed_names(hmdb):
    with pytest.raises(DatasetIndexError, match=re.escape("dataset 'kinetics' not in {hmdb51, ucf101}")):
        dataset_index("kinetics", *hmdb, 1)


def test_split_names_are_the_feature_stores():
    assert index_module.TRAIN_SPLIT == TRAIN_SPLIT
    assert index_module.TEST_SPLIT == "test"
