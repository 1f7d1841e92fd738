"""Videos → feature store: decode, sample, flow and pose, frozen backbones, in batches (docs/design.md §1).

    index = dataset_index("hmdb51", "data/hmdb51/videos", "data/hmdb51/splits", split=1)
    report = extract_store(index, load_extract_config("extract.yaml"), "features/hmdb51-split1",
                           train_views=2, seed=0)

Per clip: the video is decoded once; each view samples its frames (train clip view ``v``:
one random frame per segment from ``view_rng(seed, clip_id, v)``; test clip: one random
offset from ``view_rng(seed, clip_id, 0)``), computes flow and pose once at those frames,
and the backbones see batches of ``batch_size`` views of one modality at a time. A finished
clip goes to its shard in ``STORE.partial`` (:mod:`.shards`), so an interrupted extraction
resumes where it stopped; at the end the store is assembled from the shards. Clips that
cannot be decoded (or whose pose renderings are missing) are left out and listed, with
the reason, in the report and in the manifest's provenance as ``failed_clips``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

import adf_service
from adf_service.console import progress_bar
from adf_service.extract.config import ExtractConfig
from adf_service.extract.decode import VideoDecodeError, read_frames
from adf_service.extract.index import TEST_SPLIT, TRAIN_SPLIT, DatasetIndex, VideoClip
from adf_service.extract.pose import PoseError
from adf_service.extract.sampling import sampled_frames, view_rng
from adf_service.extract.shards import ClipFeatures, ExtractError, PartialDir
from adf_service.extract.streams import LAYERS, Stream, build_streams
from adf_service.features.manifest import MANIFEST_FILE, Manifest
from adf_service.features.writer import FeatureStoreWriter
from adf_service.train.runtime import Runtime

__all__ = ["ExtractError", "ExtractReport", "FailedClip", "extract_store"]

_FAIL_FAST = 10  # stop when this many clips failed and none succeeded: a setting, not the videos, is wrong
# What a resumed extraction must share with the one that wrote the shards.
_FINGERPRINT_KEYS = ("dataset", "split", "classes", "frames", "size", "dtype", "backbones", "seed", "n_train_views",
                     "precision")
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class FailedClip:
    """A listed clip that was left out of the store, and why."""

    clip_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class ExtractReport:
    """What :func:`extract_store` did: the finished store and which clips came from where."""

    store: Path
    manifest: Manifest
    extracted: tuple[str, ...]  # clips computed by this call
    resumed: tuple[str, ...]  # clips whose shard an earlier, interrupted call had written
    failed: tuple[FailedClip, ...]
    seconds: float


@dataclass
class _ClipWork:
    """A decoded clip's inputs per view, and its features as the batches deliver them."""

    clip: VideoClip
    inputs: list[dict[str, np.ndarray]]  # per view: {modality: [T, C, H, W]}
    features: list[ClipFeatures] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.features = [{} for _ in self.inputs]


def extract_store(index: DatasetIndex, config: ExtractConfig, out: Path | str, *, train_views: int = 2,
                  seed: int = 0, device: str = "auto", batch_size: int = 8, workers: int | None = None,
                  limit: int | None = None, progress: bool = True,
                  on_clip: Callable[[VideoClip], None] | None = None) -> ExtractReport:
    """Extract the features of every clip of ``index`` into a feature store at ``out``.

    Args:
        index: the clips, labels and splits (:func:`~adf_service.extract.dataset_index`).
        config: streams, sampling and storage (:func:`~adf_service.extract.load_extract_config`).
        out: the store directory; unfinished work lives in ``out.partial`` until the end.
        train_views: differently sampled views per train clip (test clips get one).
        seed: the one seed of frame sampling (and of random-init backbones).
        device: ``auto`` (CUDA with bf16 autocast when present, else CPU fp32), ``cpu``, ``cuda``.
        batch_size: clip views per backbone forward.
        workers: threads decoding and computing flow/pose ahead of the backbones; default 1 on a
            CPU, all cores but two on a GPU machine.
        limit: debugging: only the first ``limit`` clips of each split.
        progress: show a progress bar (clips done / total, ETA) on stderr.
        on_clip: called after each clip's features are safely written.

    Raises:
        ExtractError: ``out`` already holds a store; ``STORE.partial`` was made by another
            extraction; no clip could be extracted.
    """
    started = time.monotonic()
    out = Path(out)
    runtime = _check_arguments(out, train_views, seed, device, batch_size, workers, limit)
    clips = _selected(index, limit)
    streams = build_streams(config, runtime, seed)
    provenance = _provenance(index, config, streams, seed, train_views, runtime, limit)
    partial = PartialDir.open(out, {k: provenance[k] for k in _FINGERPRINT_KEYS})
    resumed = partial.done() & {c.clip_id for c in clips}
    todo = [c for c in clips if c.clip_id not in resumed]
    extracted: list[str] = []
    failed: list[FailedClip] = []
    decoded = 0
    with _torch_threads(runtime), progress_bar(disable=not progress) as bar:
        task = bar.add_task("extract", total=len(clips), completed=len(resumed), status="")

        def finished(work: _ClipWork) -> None:
            partial.write(work.clip.clip_id, work.features, config.dtype)
            extracted.append(work.clip.clip_id)
            bar.advance(task)
            if on_clip is not None:
                on_clip(work.clip)

        def prepare(clip: VideoClip) -> _ClipWork | FailedClip:
            return _prepare(clip, streams, config, seed, train_views)

        pending: list[tuple[_ClipWork, int]] = []  # (clip, view) waiting for a batch
        for work in _in_order(prepare, todo, _workers(workers, runtime)):
            if isinstance(work, FailedClip):
                failed.append(work)
                bar.update(task, advance=1, status=f"[red]{len(failed)} failed")
                if len(failed) >= _FAIL_FAST and not resumed and not decoded:
                    raise ExtractError(_all_failed(failed))
                continue
            decoded += 1
            pending += [(work, view) for view in range(len(work.inputs))]
            while len(pending) >= batch_size:
                _run_batch(pending[:batch_size], streams, batch_size, finished)
                del pending[:batch_size]
        if pending:
            _run_batch(pending, streams, batch_size, finished)
    written = resumed | set(extracted)
    kept = [c for c in clips if c.clip_id in written]
    if not kept:
        raise ExtractError(_all_failed(failed) if failed else f"{index.name}: no clips to extract")
    provenance["failed_clips"] = [vars(f) for f in failed]
    manifest = _assemble(out, partial, kept, index, config, streams, train_views, provenance)
    partial.remove()
    return ExtractReport(out, manifest, tuple(extracted), tuple(sorted(resumed)), tuple(failed),
                         time.monotonic() - started)


def _check_arguments(out: Path, train_views: int, seed: int, device: str, batch_size: int,
                     workers: int | None, limit: int | None) -> Runtime:
    for name, value, least in (("train_views", train_views, 1), ("seed", seed, 0), ("batch_size", batch_size, 1),
                               ("workers", workers, 0), ("limit", limit, 1)):
        if value is not None and (not isinstance(value, int) or value < least):
            raise ExtractError(f"{name} must be an integer ≥ {least}, got {value!r}")
    if (out / MANIFEST_FILE).exists():
        raise ExtractError(f"{out} already holds a feature store; choose another output directory or delete it")
    runtime = Runtime(device)
    try:
        runtime.torch_device
    except RuntimeError as exc:
        raise ExtractError(f"device {device!r} is not a torch device (auto, cpu, cuda, cuda:1, ...): {exc}") from None
    if runtime.torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractError(f"device {device!r}: no CUDA device is available here; use --device cpu or auto")
    return runtime


def _selected(index: DatasetIndex, limit: int | None) -> list[VideoClip]:
    """The index's clips in order, at most ``limit`` of each split."""
    if limit is None:
        return list(index.clips)
    taken = {TRAIN_SPLIT: 0, TEST_SPLIT: 0}
    chosen = []
    for clip in index.clips:
        if taken[clip.split] < limit:
            taken[clip.split] += 1
            chosen.append(clip)
    return chosen


def _prepare(clip: VideoClip, streams: dict[str, Stream], config: ExtractConfig, seed: int,
             train_views: int) -> _ClipWork | FailedClip:
    """Decode ``clip`` once, sample each view and make every modality's input at those frames."""
    train = clip.split == TRAIN_SPLIT
    try:
        frames = read_frames(clip.path, config.size)
        inputs = []
        for view in range(train_views if train else 1):
            indices = sampled_frames(len(frames), train=train, rng=view_rng(seed, clip.clip_id, view),
                                     n_segments=config.frames)
            inputs.append({m: stream.input_of(clip.clip_id, frames, indices) for m, stream in streams.items()})
    except (VideoDecodeError, PoseError) as exc:
        return FailedClip(clip.clip_id, str(clip.path), str(exc))
    return _ClipWork(clip, inputs)


def _run_batch(batch: list[tuple[_ClipWork, int]], streams: dict[str, Stream], batch_size: int,
               finished: Callable[[_ClipWork], None]) -> None:
    """Features of a batch of (clip, view), modality by modality; hand on the clips it completes."""
    for modality, stream in streams.items():
        out = stream.features([work.inputs[view][modality] for work, view in batch], batch_size)
        for i, (work, view) in enumerate(batch):
            work.features[view][modality] = {layer: out[layer][i] for layer in LAYERS}
    for work, view in batch:
        if view == len(work.inputs) - 1:  # views are queued in order: the clip's last one is done
            work.inputs = []
            finished(work)


def _in_order(function: Callable[[_T], _R], items: Iterable[_T], workers: int) -> Iterator[_R]:
    """``map(function, items)``, computed up to ``2·workers`` items ahead by ``workers`` threads."""
    if workers == 0:
        yield from map(function, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="extract")
    window: deque = deque()
    try:
        for item in items:
            window.append(pool.submit(function, item))
            if len(window) > 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _workers(workers: int | None, runtime: Runtime) -> int:
    if workers is not None:
        return workers
    # decoding and TV-L1 flow (OpenCV, FFmpeg) release the GIL: threads keep a GPU fed
    return max(1, min(16, _cpu_count() - 2)) if runtime.torch_device.type == "cuda" else 1


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(runtime: Runtime) -> Iterator[None]:
    """On a CPU, one intra-op thread per core this process may use (torch counts the machine's)."""
    before = torch.get_num_threads()
    if runtime.torch_device.type == "cpu":
        torch.set_num_threads(_cpu_count())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _assemble(out: Path, partial: PartialDir, clips: list[VideoClip], index: DatasetIndex, config: ExtractConfig,
              streams: dict[str, Stream], train_views: int, provenance: dict[str, Any]) -> Manifest:
    """Write the store from the shards: per split and view, clips in the store's (sorted) order."""
    shapes = {m: s.output_shapes(config.frames, config.size) for m, s in streams.items()}
    with FeatureStoreWriter(out, name=index.name, shapes=shapes, classes=index.classes,
                            n_train_views=train_views, dtype=config.dtype, provenance=provenance) as writer:
        for split in (TRAIN_SPLIT, TEST_SPLIT):
            in_split = sorted((c for c in clips if c.split == split), key=lambda c: c.clip_id)
            for view in range(train_views if split == TRAIN_SPLIT else 1):
                for clip in in_split:
                    writer.add(clip.clip_id, clip.label, split, view, partial.read(clip.clip_id, view))
                writer.flush()  # one record batch per (split, view): zero-copy layer_array
    return writer.manifest


def _provenance(index: DatasetIndex, config: ExtractConfig, streams: dict[str, Stream], seed: int,
                train_views: int, runtime: Runtime, limit: int | None) -> dict[str, Any]:
    dataset, _, split = index.name.rpartition("-split")
    random_init = [m for m, s in streams.items() if s.spec.random_init]
    provenance: dict[str, Any] = {
        "extractor": "adf_service.extract.extract_store",
        "dataset": dataset or index.name,
        "split": int(split) if split.isdigit() else None,
        "classes": list(index.classes),
        "limit": limit,
        "config": config.model_dump(mode="json"),
        "frames": config.frames,
        "size": config.size,
        "dtype": config.dtype,
        "sampling": "thesis §5.1.3: loop to ≥ frames, trim to a multiple, one frame per segment; train view v "
                    "random per segment from view_rng(seed, clip_id, v), test one random offset (view 0)",
        "backbones": {m: s.provenance for m, s in streams.items()},
        "seed": seed,
        "n_train_views": train_views,
        "precision": "bf16" if runtime.use_bf16 else "fp32",
        "device": str(runtime.torch_device),
        "code_version": adf_service.__version__,
        "torch_version": torch.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if random_init:
        provenance["WARNING"] = (f"RANDOM-INIT BACKBONES for {', '.join(random_init)}: these features carry "
                                 "no pre-trained knowledge; use them for tests and smoke runs only")
    return provenance


def _all_failed(failed: list[FailedClip]) -> str:
    shown = "\n".join(f"  {f.clip_id}: {f.reason}" for f in failed[:5])
    return (f"all {len(failed)} clips tried so far failed (check the videos and the pose options); "
            f"the first reasons:\n{shown}")

