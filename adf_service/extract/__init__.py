"""Extraction: videos → sampled frames → flow / pose → frozen 3D backbones → feature store.

- :func:`dataset_index` (:func:`hmdb51_index`, :func:`ucf101_index`) reads the official
  split files into a :class:`DatasetIndex` of :class:`VideoClip`\\ s;
- :func:`read_frames` decodes a clip with PyAV into RGB frames resized to 112×112;
- :func:`sampled_frames` picks the 64 frames the backbones see (docs/design.md §6), seeded per
  clip and view by :func:`view_rng`;
- :func:`load_extract_config` reads an extract.yaml (backbones, checkpoints, flow, pose);
- :func:`extract_store` runs the whole pipeline into a feature store, resumably;
- :func:`write_toy_dataset` writes a tiny labelled dataset of moving squares in either
  official layout, for tests and demos.

Importing this package loads PyAV, OpenCV and torch; the ``adf-service extract`` command
(``adf_service/cli.py``) imports it only when it runs.
"""

from adf_service.extract.config import (
    ExtractConfig,
    ExtractConfigError,
    load_extract_config,
    parse_extract_config,
)
from adf_service.extract.decode import FRAME_SIZE, VideoDecodeError, read_frames
from adf_service.extract.index import (
    DatasetIndex,
    DatasetIndexError,
    VideoClip,
    dataset_index,
    hmdb51_index,
    ucf101_index,
)
from adf_service.extract.pipeline import ExtractError, ExtractReport, FailedClip, extract_store
from adf_service.extract.sampling import (
    N_SEGMENTS,
    SegmentLayout,
    check_clip,
    sampled_frames,
    segment_layout,
    view_rng,
)
from adf_service.extract.toyvideos import ToyDatasetError, toy_direction, write_toy_dataset

__all__ = [
    "DatasetIndex",
    "DatasetIndexError",
    "ExtractConfig",
    "ExtractConfigError",
    "ExtractError",
    "ExtractReport",
    "FRAME_SIZE",
    "FailedClip",
    "N_SEGMENTS",
    "SegmentLayout",
    "ToyDatasetError",
    "VideoClip",
    "VideoDecodeError",
    "check_clip",
    "dataset_index",
    "extract_store",
    "hmdb51_index",
    "load_extract_config",
    "parse_extract_config",
    "read_frames",
    "sampled_frames",
    "segment_layout",
    "toy_direction",
    "ucf101_index",
    "view_rng",
    "write_toy_dataset",
]
