"""Dataset indexes: which clip is which class in which split, read from the official split files.

- HMDB51 (thesis §5.1): ``<splits>/<class>_test_split<N>.txt``, lines ``name.avi 1|2|0``
  (1 = train, 2 = test, 0 = not used in this split); videos at ``<videos>/<class>/<name>.avi``.
- UCF101: ``<splits>/classInd.txt`` (``1 ApplyEyeMakeup``, 1-based), ``trainlist0N.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, the label optional) and
  ``testlist0N.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi``); videos at
  ``<videos>/<relative path>``.

Every error is a :class:`DatasetIndexError` naming the file and line it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "DATASETS",
    "SPLIT_NUMBERS",
    "TEST_SPLIT",
    "TRAIN_SPLIT",
    "DatasetIndex",
    "DatasetIndexError",
    "VideoClip",
    "dataset_index",
    "hmdb51_index",
    "ucf101_index",
]

# the feature store's split names; not imported from adf_service.features, which pulls in torch
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
SPLIT_NUMBERS = (1, 2, 3)  # both datasets ship three train/test splits
DATASETS = ("hmdb51", "ucf101")
_HMDB51_CODES = {"1": TRAIN_SPLIT, "2": TEST_SPLIT, "0": None}  # 0 = clip not used in this split
_MAX_MISSING_SHOWN = 5


class DatasetIndexError(ValueError):
    """Split files that cannot make an index: the message names the file and line."""


@dataclass(frozen=True)
class VideoClip:
    """One labelled video: ``clip_id`` is its file stem (unique within an index)."""

    clip_id: str
    path: Path
    label: int  # index into DatasetIndex.classes
    split: str  # "train" or "test"


@dataclass(frozen=True)
class DatasetIndex:
    """The clips of one dataset split, in split-file order."""

    name: str  # e.g. "hmdb51-split1"
    classes: tuple[str, ...]
    clips: tuple[VideoClip, ...]

    def counts(self) -> dict[str, int]:
        """Clips per split: ``{"train": n, "test": m}``."""
        counts = {TRAIN_SPLIT: 0, TEST_SPLIT: 0}
        for clip in self.clips:
            counts[clip.split] += 1
        return counts


@dataclass(frozen=True)
class _Entry:
    """A clip as listed, with where it was listed (for error messages)."""

    clip: VideoClip
    where: str  # "file:line"


def dataset_index(dataset: Literal["hmdb51", "ucf101"], videos: Path | str, splits: Path | str,
                  split: int) -> DatasetIndex:
    """The index of ``dataset``'s official split ``split`` (1, 2 or 3)."""
    if dataset == "hmdb51":
        return hmdb51_index(videos, splits, split)
    if dataset == "ucf101":
        return ucf101_index(videos, splits, split)
    raise DatasetIndexError(f"dataset {dataset!r} not in {{{', '.join(DATASETS)}}}")


def hmdb51_index(videos: Path | str, splits: Path | str, split: int) -> DatasetIndex:
    """HMDB51 split ``split``: classes are the sorted ``<class>`` names of its split files."""
    videos, splits = _directories(videos, splits)
    _check_split_number(split)
    suffix = f"_test_split{split}.txt"
    files = {p.name[: -len(suffix)]: p for p in splits.glob(f"*{suffix}") if p.is_file()}
    if not files:
        raise DatasetIndexError(f"no HMDB51 split files '*{suffix}' in {splits}")
    if "" in files:
        raise DatasetIndexError(f"{files['']}: split file name has no class before '{suffix}'")
    classes = tuple(sorted(files))
    entries = []
    for label, name in enumerate(classes):
        for where, fields in _lines(files[name]):
            if len(fields) != 2 or fields[1] not in _HMDB51_CODES or not _is_file_name(fields[0]):
                raise DatasetIndexError(f"{where}: expected 'name.avi 1|2|0', got {' '.join(fields)!r}")
            split_name = _HMDB51_CODES[fields[1]]
            if split_name is not None:
                clip = VideoClip(_stem(fields[0]), videos / name / fields[0], label, split_name)
                entries.append(_Entry(clip, where))
    return _index(f"hmdb51-split{split}", classes, entries)


def ucf101_index(videos: Path | str, splits: Path | str, split: int) -> DatasetIndex:
    """UCF101 split ``split``: classes in ``classInd.txt`` order (label = number − 1)."""
    videos, splits = _directories(videos, splits)
    _check_split_number(split)
    names = ("classInd.txt", f"trainlist{split:02d}.txt", f"testlist{split:02d}.txt")
    missing = [n for n in names if not (splits / n).is_file()]
    if missing:
        raise DatasetIndexError(f"missing UCF101 split file(s) {', '.join(missing)} in {splits}")
    class_file, train_file, test_file = (splits / n for n in names)
    classes = _ucf101_classes(class_file)
    entries = [*_ucf101_list(train_file, TRAIN_SPLIT, classes, videos),
               *_ucf101_list(test_file, TEST_SPLIT, classes, videos)]
    return _index(f"ucf101-split{split}", classes, entries)


def _ucf101_classes(path: Path) -> tuple[str, ...]:
    """``classInd.txt``: numbers must be exactly 1..K, each with one distinct class name."""
    by_number: dict[int, str] = {}
    seen: dict[str, str] = {}
    for where, fields in _lines(path):
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) < 1:
            raise DatasetIndexError(f"{where}: expected '<number ≥ 1> <ClassName>', got {' '.join(fields)!r}")
        number, name = int(fields[0]), fields[1]
        if number in by_number:
            raise DatasetIndexError(f"{where}: class number {number} already given to {by_number[number]!r}")
        if name in seen:
            raise DatasetIndexError(f"{where}: class {name!r} already listed at {seen[name]}")
        by_number[number], seen[name] = name, where
    if not by_number:
        raise DatasetIndexError(f"{path}: lists no classes")
    gaps = sorted(set(range(1, len(by_number) + 1)) - by_number.keys())
    if gaps:
        raise DatasetIndexError(f"{path}: class numbers must be 1..{len(by_number)}; missing {gaps[:5]}")
    return tuple(by_number[n] for n in sorted(by_number))


def _ucf101_list(path: Path, split: str, classes: tuple[str, ...], videos: Path) -> Iterator[_Entry]:
    """A train or test list: ``<Class>/<name>.avi [label]``; the class is the directory."""
    label_of = {name: i for i, name in enumerate(classes)}
    for where, fields in _lines(path):
        parts = fields[0].split("/")
        if (len(fields) > 2 or len(parts) != 2 or not _is_file_name(parts[1]) or not parts[0]
                or (len(fields) == 2 and not fields[1].isdigit())):
            raise DatasetIndexError(f"{where}: expected '<Class>/<name>.avi [label]', got {' '.join(fields)!r}")
        class_name, file_name = parts
        if class_name not in label_of:
            raise DatasetIndexError(f"{where}: class {class_name!r} is not in {path.parent / 'classInd.txt'}")
        label = label_of[class_name]
        if len(fields) == 2 and int(fields[1]) != label + 1:
            raise DatasetIndexError(f"{where}: label {fields[1]} disagrees with directory {class_name!r}, "
                                    f"class number {label + 1} in classInd.txt")
        yield _Entry(VideoClip(_stem(file_name), videos / class_name / file_name, label, split), where)


def _index(name: str, classes: tuple[str, ...], entries: list[_Entry]) -> DatasetIndex:
    """Check ids are unique, no clip is both train and test, every video exists; build the index."""
    first: dict[str, _Entry] = {}
    for entry in entries:
        clip = entry.clip
        earlier = first.setdefault(clip.clip_id, entry)
        if earlier is entry:
            continue
        if earlier.clip.split != clip.split:
            raise DatasetIndexError(f"{entry.where}: clip {clip.clip_id!r} is listed as {clip.split} here "
                                    f"and as {earlier.clip.split} at {earlier.where}")
        raise DatasetIndexError(f"{entry.where}: duplicate clip id {clip.clip_id!r}, "
                                f"already listed at {earlier.where}")
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        if not any(e.clip.split == split for e in entries):
            raise DatasetIndexError(f"{name}: the split files list no {split} clips")
    missing = [e for e in entries if not e.clip.path.is_file()]
    if missing:
        shown = "; ".join(f"{e.clip.path} (listed at {e.where})" for e in missing[:_MAX_MISSING_SHOWN])
        more = f" and {len(missing) - _MAX_MISSING_SHOWN} more" if len(missing) > _MAX_MISSING_SHOWN else ""
        raise DatasetIndexError(f"{name}: {len(missing)} listed video(s) not on disk: {shown}{more}")
    return DatasetIndex(name, classes, tuple(e.clip for e in entries))


def _lines(path: Path) -> Iterator[tuple[str, list[str]]]:
    """``("file:line", fields)`` per non-blank line; tolerates CRLF, a BOM and trailing blanks."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetIndexError(f"{path}: cannot read split file ({e})") from e
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            yield f"{path}:{number}", fields


def _directories(videos: Path | str, splits: Path | str) -> tuple[Path, Path]:
    videos, splits = Path(videos), Path(splits)
    for kind, directory in (("videos", videos), ("splits", splits)):
        if not directory.is_dir():
            raise DatasetIndexError(f"{kind} directory {directory} does not exist")
    return videos, splits


def _check_split_number(split: int) -> None:
    if isinstance(split, bool) or split not in SPLIT_NUMBERS:
        raise DatasetIndexError(f"split {split!r} not in {{{', '.join(map(str, SPLIT_NUMBERS))}}}")


def _is_file_name(name: str) -> bool:
    """A plain file name with a stem: usable as a filesystem-safe clip id once the suffix is off."""
    return "/" not in name and "\\" not in name and _stem(name) not in ("", ".", "..")


def _stem(name: str) -> str:
    return Path(name).stem
