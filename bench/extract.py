"""Extraction speed per step, and the feature store's read throughput against raw numpy reads.

On toy videos it writes itself (moving squares, MPEG-4 AVI, ``--video-size`` px, decoded to
112×112), one clip = one view of 64 sampled frames:

- clips/s of each step: decode, flow (Farneback, TV-L1), pose (``zeros``, ``precomputed`` PNGs),
  each thesis backbone on a batch of full-size clips (64×112×112, random weights), and the
  whole pipeline (:func:`extract_store` with all three thesis backbones, Farneback flow, zeros
  pose) beside the sum of its steps run one after another;
- a feature store of ``--store-clips`` clips with the thesis' layer3/layer4 shapes (float16):
  reading every layer3 array through ``FeatureStore.layer_array`` (copied out of the memory
  map) against ``np.fromfile`` of the same bytes, from the page cache (warm, the store opened
  before the clock starts) and after evicting it (cold, ``posix_fadvise(DONTNEED)``, opening
  included); and ``ClipSet.batches`` (float32 tensors) against
  ``np.fromfile`` + ``astype(float32)``. Target: store / raw ≥ 0.8.

    python bench/extract.py                   # CPU
    python bench/extract.py --device cuda     # backbones and pipeline on the GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from adf_service.extract import (
    dataset_index,
    extract_store,
    parse_extract_config,
    read_frames,
    write_toy_dataset,
)
from adf_service.extract.flow import FlowConfig, flow_at
from adf_service.extract.pose import create_pose_extractor, pose_at
from adf_service.extract.sampling import sampled_frames, view_rng
from adf_service.extract.streams import build_streams
from adf_service.features import ClipSet, FeatureStore, FeatureStoreWriter
from adf_service.train.runtime import Runtime, keep_freed_memory_in_heap

THESIS_STREAMS = {  # docs/design.md §2, random weights: speed does not depend on their values
    "rgb": {"arch": "r2plus1d_50", "random_init": True},
    "flow": {"arch": "resnext3d_101", "random_init": True, "method": "farneback"},
    "pose": {"arch": "resnet3d_18", "random_init": True, "extractor": "zeros"},
}
STORE_SHAPES = {  # docs/design.md §2: thesis backbones on 64×112×112 clips
    "rgb": {"layer3": [1024, 8, 7, 7], "layer4": [2048, 4, 4, 4]},
    "flow": {"layer3": [1024, 8, 7, 7], "layer4": [2048, 4, 4, 4]},
    "pose": {"layer3": [256, 8, 7, 7], "layer4": [512, 4, 4, 4]},
}


def per_clip(function: Callable[[int], object], n: int) -> float:
    """Seconds per call of ``function(i)`` over ``i < n``."""
    started = time.perf_counter()
    for i in range(n):
        function(i)
    return (time.perf_counter() - started) / n


def bench_steps(root: Path, args: argparse.Namespace) -> dict:
    videos, splits = write_toy_dataset(root / "toy", classes=3, clips_per_class=max(2, args.clips // 3 + 1),
                                       test_per_class=1, frames=96, size=args.video_size)
    index = dataset_index("hmdb51", videos, splits, 1)
    clips = list(index.clips[: args.clips])
    frames, indices = [], []

    def decode(i: int) -> None:
        frames.append(read_frames(clips[i].path))
        indices.append(sampled_frames(len(frames[i]), train=False, rng=view_rng(0, clips[i].clip_id, 0)))

    seconds = {"decode": per_clip(decode, len(clips))}
    seconds["flow farneback"] = per_clip(lambda i: flow_at(frames[i], indices[i], FlowConfig("farneback")),
                                         len(clips))
    seconds["flow tvl1"] = per_clip(lambda i: flow_at(frames[i], indices[i], FlowConfig("tvl1")),
                                    min(args.tvl1_clips, len(clips)))
    zeros = create_pose_extractor("zeros")
    seconds["pose zeros"] = per_clip(lambda i: pose_at(zeros, clips[i].clip_id, frames[i], indices[i]),
                                     len(clips))
    renderings = root / "pose"
    for clip, clip_frames in zip(clips, frames):  # stand-in renderings: the frames, thresholded
        (renderings / clip.clip_id).mkdir(parents=True)
        for j, image in enumerate(clip_frames):
            rendering = np.where(image > 128, 255, 0).astype(np.uint8)
            cv2.imwrite(str(renderings / clip.clip_id / f"{j:05d}.png"), rendering)
    precomputed = create_pose_extractor("precomputed", root=renderings)
    seconds["pose precomputed"] = per_clip(
        lambda i: pose_at(precomputed, clips[i].clip_id, frames[i], indices[i]), len(clips))

    runtime = Runtime(args.device)
    streams = build_streams(parse_extract_config(THESIS_STREAMS), runtime, seed=0)
    for modality, stream in streams.items():
        inputs = [stream.input_of(clips[0].clip_id, frames[0], indices[0])] * args.batch_size

        def forward(_: int, stream=stream, inputs=inputs) -> None:
            stream.features(inputs, args.batch_size)
            if runtime.torch_device.type == "cuda":
                torch.cuda.synchronize()

        forward(0)  # warm-up: kernels, allocator
        seconds[f"backbone {stream.spec.arch} ({modality})"] = per_clip(forward, args.batches) / args.batch_size

    finished: list[float] = []
    batch = args.batch_size
    n_pipeline = max(2 * batch, len(clips) // batch * batch)  # whole batches: no padded last batch
    report = extract_store(replace(index, clips=tuple(index.clips[:n_pipeline])),
                           parse_extract_config(THESIS_STREAMS), root / "store", train_views=1,
                           device=args.device, batch_size=batch, progress=False,
                           on_clip=lambda clip: finished.append(time.perf_counter()))
    # steady state: from the end of the first batch to the end of the last (no set-up, warm-up, assembly)
    pipeline = (finished[-1] - finished[batch - 1]) / (len(finished) - batch)
    serial = sum(s for k, s in seconds.items() if k.startswith(("decode", "flow farneback", "pose zeros", "backbone")))
    return {"seconds_per_clip": seconds, "pipeline_seconds_per_clip": pipeline, "serial_seconds_per_clip": serial,
            "pipeline_clips": len(report.extracted)}


def bench_store(root: Path, n_clips: int, repeats: int) -> dict:
    """Read every layer3 array of a thesis-shaped store, against np.fromfile of the same bytes."""
    rng = np.random.default_rng(0)
    n_test = n_clips // 5
    path, raw = root / "store-read", root / "raw"
    raw.mkdir()
    layer3 = {m: rng.standard_normal((n_clips, *s["layer3"]), dtype=np.float32).astype(np.float16)
              for m, s in STORE_SHAPES.items()}
    with FeatureStoreWriter(path, name="bench", shapes=STORE_SHAPES, classes=["a", "b"], n_train_views=1,
                            dtype="float16") as writer:
        for i in range(n_clips):
            split = "test" if i < n_test else "train"
            layer4 = {m: np.zeros(s["layer4"], np.float16) for m, s in STORE_SHAPES.items()}
            writer.add(f"clip{i:05d}", i % 2, split, 0,
                       {m: {"layer3": layer3[m][i], "layer4": layer4[m]} for m in STORE_SHAPES})
            if i == n_test - 1:
                writer.flush()  # one record batch per split, as extract_store writes them
    for m, array in layer3.items():  # the same bytes, split by split, one raw file per (modality, split)
        array[:n_test].tofile(raw / f"{m}-test.bin")
        array[n_test:].tofile(raw / f"{m}-train.bin")
    nbytes = sum(a.nbytes for a in layer3.values())
    del layer3
    files = [path / "features.arrow", *raw.iterdir()]
    for f in files:
        with open(f, "rb+") as handle:
            os.fsync(handle.fileno())

    def evict() -> None:
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

    def opened() -> FeatureStore:
        return FeatureStore.open(path)

    def store_read(store: FeatureStore | None) -> None:
        store = store or FeatureStore.open(path)  # cold: opening reads the file's metadata too
        for m in store.modalities:
            for s in store.splits:
                _in_memory(store.layer_array(m, "layer3", s))

    def raw_read(_: None) -> None:
        for m in STORE_SHAPES:
            for s in ("test", "train"):
                np.fromfile(raw / f"{m}-{s}.bin", dtype=np.float16)

    def clipset_read(store: FeatureStore) -> None:
        for s in store.splits:
            for _ in ClipSet.of(store, s, "layer3").batches(64, shuffle=False, seed=0, epoch=0):
                pass

    def raw_float32(_: None) -> None:
        for m in STORE_SHAPES:
            for s in ("test", "train"):
                torch.from_numpy(np.fromfile(raw / f"{m}-{s}.bin", dtype=np.float16).astype(np.float32))

    # name: (what is ready before the clock starts, the read, evict the page cache first)
    readers = {"store warm": (opened, store_read, False), "raw warm": (lambda: None, raw_read, False),
               "store cold": (lambda: None, store_read, True), "raw cold": (lambda: None, raw_read, True),
               "clipset warm": (opened, clipset_read, False), "raw float32 warm": (lambda: None, raw_float32, False),
               "open": (lambda: None, lambda _: opened(), False)}
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(repeats):  # interleaved, so that a busy spell on the machine hits both sides
        for name, (setup, read, cold) in readers.items():
            if cold:
                evict()
            ready = setup()
            started = time.perf_counter()
            read(ready)
            best[name] = min(best[name], time.perf_counter() - started)
    open_ms = best.pop("open") * 1e3
    return {"bytes": nbytes, "open_ms": open_ms, **{name: nbytes / s / 2**20 for name, s in best.items()}}  # MiB/s


def _in_memory(array: np.ndarray) -> np.ndarray:
    """``array`` read into process memory: a zero-copy view on the memory map (read-only) is copied,
    a gathered copy is already there."""
    return array if array.flags.writeable else array.copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=8, help="toy clips per step")
    parser.add_argument("--tvl1-clips", type=int, default=2, help="TV-L1 takes about 10 s a clip on a CPU")
    parser.add_argument("--video-size", type=int, default=160, help="toy video side, px (decoded to 112)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3, help="timed backbone batches per arch")
    parser.add_argument("--store-clips", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keep_freed_memory_in_heap()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        steps = bench_steps(Path(tmp), args)
        store = bench_store(Path(tmp), args.store_clips, args.repeats)
    report = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads", "device": args.device, **steps, "store": store}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['machine']}; device {args.device}; clips of 64 frames at 112×112 "
          f"(toy videos {args.video_size}×{args.video_size}, 96 frames)")
    print("| step | s / clip | clips / s |\n|---|---|---|")
    for step, s in steps["seconds_per_clip"].items():
        print(f"| {step} | {s:.3f} | {1 / s:.2f} |")
    pipeline = steps["pipeline_seconds_per_clip"]
    print(f"| pipeline: thesis backbones, farneback, zeros pose ({steps['pipeline_clips']} clips, batch "
          f"{args.batch_size}) | {pipeline:.3f} | {1 / pipeline:.2f} |")
    print(f"pipeline / its steps one after another: {steps['serial_seconds_per_clip'] / pipeline:.2f} "
          "(throughput ratio; > 1: decoding and flow overlap the backbones)")
    print(f"\nstore read, {store['bytes'] / 2**20:.0f} MiB of float16 layer3 ({args.store_clips} clips), MiB/s "
          f"(warm: store opened before the clock, {store['open_ms']:.0f} ms; cold: open + read):")
    print("| read | store | raw numpy | store / raw |\n|---|---|---|---|")
    for kind, ours, theirs in (("warm (page cache)", "store warm", "raw warm"),
                               ("cold (evicted)", "store cold", "raw cold"),
                               ("ClipSet batches → float32", "clipset warm", "raw float32 warm")):
        print(f"| {kind} | {store[ours]:.0f} | {store[theirs]:.0f} | **{store[ours] / store[theirs]:.2f}** |")


if __name__ == "__main__":
    main()
