"""Extraction: videos → sampled frames → flow / pose → frozen 3D backbones → feature store.

- :func:`dataset_index` (:func:`hmdb51_index`, :func:`ucf101_index`) reads the official
  split files into a :class:`DatasetIndex` of :class:`VideoClip`\\ s;
- :func:`read_frames` decodes a clip with PyAV into RGB frames resized to 112×112;
- :func:`sampled_frames` picks the 64 frames the backbones see (DESIGN §6), seeded per
  clip and view by :func:`view_rng`;
- :func:`load_extract_config` reads an extract.yaml (backbones, checkpoints, flow, pose);
- :func:`extract_store` runs the whole pipeline into a feature store, resumably;
- :func:`write_toy_dataset` writes a tiny labelled dataset of moving squares in either
  official layout, for tests and demos.

Names are imported on first use, so that ``import adf_service.extract.cli`` (done by every
``adf-service`` command) does not load PyAV, OpenCV and the backbones.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "FRAME_SIZE": "decode",
    "VideoDecodeError": "decode",
    "read_frames": "decode",
    "DatasetIndex": "index",
    "DatasetIndexError": "index",
    "VideoClip": "index",
    "dataset_index": "index",
    "hmdb51_index": "index",
    "ucf101_index": "index",
    "N_SEGMENTS": "sampling",
    "SegmentLayout": "sampling",
    "check_clip": "sampling",
    "sampled_frames": "sampling",
    "segment_layout": "sampling",
    "view_rng": "sampling",
    "ToyDatasetError": "toyvideos",
    "toy_direction": "toyvideos",
    "write_toy_dataset": "toyvideos",
    "ExtractConfig": "config",
    "ExtractConfigError": "config",
    "load_extract_config": "config",
    "parse_extract_config": "config",
    "ExtractError": "pipeline",
    "ExtractReport": "pipeline",
    "FailedClip": "pipeline",
    "extract_store": "pipeline",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
