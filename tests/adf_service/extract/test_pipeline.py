"""extract_store: videos → feature store, views, failed clips, resume, determinism, checkpoints."""

from __future__ import annotations

import hashlib
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from adf_service.extract import (
    ExtractError,
    dataset_index,
    extract_store,
    parse_extract_config,
    read_frames,
    sampled_frames,
    view_rng,
    write_toy_dataset,
)
from adf_service.extract.backbones import (
    FrozenBackbone,
    backbone_output_shapes,
    create_backbone,
    load_backbone_checkpoint,
    normalize_clip,
)
from adf_service.features import FeatureStore

# Small enough for two CPU cores: 8 segments of 16×16 give layer3 1×1×1, layer4 1×1×1.
SMALL = {"frames": 8, "size": 16}
RGB = {"rgb": {"arch": "resnet3d_18", "random_init": True}}
RGB_FLOW = {**RGB, "flow": {"arch": "resnet3d_18", "random_init": True, "method": "farneback"}}


class Interrupt(Exception):
    """Raised from on_clip to stop an extraction part-way, as a crash or Ctrl-C would."""


def config(streams: dict, **overrides):
    return parse_extract_config({**streams, **SMALL, **overrides})


def toy_index(root: Path, layout: str = "hmdb51"):
    videos, splits = write_toy_dataset(root, layout=layout, classes=2, clips_per_class=3, frames=24, size=32)
    return dataset_index(layout, videos, splits, 1)


def extract(index, out, streams=RGB_FLOW, **kwargs):
    kwargs = {"train_views": 2, "seed": 0, "batch_size": 3, "progress": False, **kwargs}
    return extract_store(index, config(streams), out, **kwargs)


def interrupted(index, out: Path, after: int, **kwargs) -> list[str]:
    """Run an extraction that stops, as a crash would, once ``after`` clips are written; their ids."""
    finished = []

    def stop(clip):
        finished.append(clip.clip_id)
        if len(finished) == after:
            raise Interrupt

    with pytest.raises(Interrupt):
        extract(index, out, on_clip=stop, **kwargs)
    return finished


def all_arrays(store: FeatureStore) -> dict[tuple, np.ndarray]:
    return {(m, layer, split, view): np.asarray(store.layer_array(m, layer, split, view))
            for m in store.modalities for layer in store.layers for split in store.splits
            for view in range(store.n_views(split))}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return toy_index(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def reference(index, tmp_path_factory):
    """An uninterrupted extraction with seed 0: rgb and flow, two train views."""
    out = tmp_path_factory.mktemp("reference") / "store"
    report = extract(index, out)
    return report, FeatureStore.open(out)


def test_store_holds_every_clip_with_its_label_split_views_and_backbone_shapes(index, reference):
    report, store = reference
    assert store.modalities == ("rgb", "flow") and store.layers == ("layer3", "layer4")
    assert store.classes == index.classes
    for split in ("train", "test"):
        clips = sorted((c for c in index.clips if c.split == split), key=lambda c: c.clip_id)
        assert store.clip_ids(split) == tuple(c.clip_id for c in clips)
        assert store.labels(split).tolist() == [c.label for c in clips]
    assert store.n_views("train") == 2 and store.n_views("test") == 1
    expected = backbone_output_shapes("resnet3d_18", (8, 16, 16))
    assert store.layer_shape("rgb", "layer3") == expected["layer3"]
    assert store.layer_shape("flow", "layer4") == expected["layer4"]
    assert store.manifest.dtype == "float16"
    assert sorted(report.extracted) == sorted(c.clip_id for c in index.clips)
    assert report.resumed == () and report.failed == ()
    assert not Path(f"{report.store}.partial").exists()


def test_train_views_of_a_clip_are_differently_sampled(reference):
    _, store = reference
    for modality in store.modalities:
        view0 = store.layer_array(modality, "layer3", "train", 0)
        view1 = store.layer_array(modality, "layer3", "train", 1)
        assert all(not np.array_equal(a, b) for a, b in zip(view0, view1))


def test_provenance_records_seed_views_backbones_flow_and_random_init_loudly(reference):
    _, store = reference
    provenance = store.manifest.provenance
    assert provenance["dataset"] == "hmdb51" and provenance["split"] == 1
    assert provenance["seed"] == 0 and provenance["n_train_views"] == 2
    assert provenance["precision"] == "fp32" and provenance["failed_clips"] == []
    assert provenance["backbones"]["flow"]["flow_method"] == "farneback"
    assert provenance["backbones"]["rgb"]["random_init"] is True
    assert "RANDOM-INIT" in provenance["WARNING"]
    assert provenance["config"]["frames"] == 8


def test_interrupted_extraction_resumes_without_recomputing_and_the_same_seed_gives_the_same_bytes(
        index, reference, tmp_path):
    out = tmp_path / "store"
    finished = interrupted(index, out, after=2)  # batches of 3 views: stops inside a batch
    shards = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "store.partial" / "clips").glob("*.npz")}
    assert set(shards) == set(finished) and not (out / "manifest.json").exists()

    recomputed, unchanged = [], []

    def record(clip):
        recomputed.append(clip.clip_id)
        unchanged.append(all((tmp_path / "store.partial" / "clips" / f"{c}.npz").stat().st_mtime_ns == t
                             for c, t in shards.items()))

    report = extract(index, out, on_clip=record)
    assert sorted(report.resumed) == sorted(finished)
    assert sorted(recomputed) == sorted(c.clip_id for c in index.clips if c.clip_id not in finished)
    assert all(unchanged)
    resumed_arrays, reference_arrays = all_arrays(FeatureStore.open(out)), all_arrays(reference[1])
    assert resumed_arrays.keys() == reference_arrays.keys()
    for key, array in reference_arrays.items():
        assert np.array_equal(resumed_arrays[key], array), key
    assert not (tmp_path / "store.partial").exists()


def test_resuming_with_another_setting_is_refused_naming_both(index, tmp_path):
    out = tmp_path / "store"
    interrupted(index, out, after=1, streams=RGB)
    with pytest.raises(ExtractError, match=r"(?s)fingerprint \w{12}.*fingerprint \w{12}.*seed: was 0, now 1"):
        extract(index, out, streams=RGB, seed=1)
    with pytest.raises(ExtractError, match="n_train_views: was 2, now 3"):
        extract(index, out, streams=RGB, train_views=3)


def test_a_corrupt_clip_is_reported_and_left_out_the_rest_extracted(tmp_path):
    index = toy_index(tmp_path / "toy")
    broken = index.clips[1]
    broken.path.write_bytes(b"RIFF\x00\x00not a video at all" * 10)
    report = extract(index, tmp_path / "store", streams=RGB)
    assert [f.clip_id for f in report.failed] == [broken.clip_id]
    assert str(broken.path) in report.failed[0].reason
    store = FeatureStore.open(tmp_path / "store")
    kept = [c.clip_id for c in index.clips if c is not broken]
    assert sorted(store.clip_ids("train") + store.clip_ids("test")) == sorted(kept)
    [listed] = store.manifest.provenance["failed_clips"]
    assert listed["clip_id"] == broken.clip_id and listed["reason"] == report.failed[0].reason


def test_when_every_clip_fails_the_extraction_stops_with_the_reasons(index, tmp_path):
    streams = {"pose": {"arch": "resnet3d_18", "random_init": True, "extractor": "precomputed",
                        "options": {"root": str(tmp_path / "no-renderings")}}}
    with pytest.raises(ExtractError, match=r"(?s)all 6 clips.*no-renderings"):
        extract(index, tmp_path / "store", streams=streams)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_ucf101_layout_and_limit_take_the_first_clips_of_each_split(tmp_path):
    index = toy_index(tmp_path / "toy", layout="ucf101")
    report = extract(index, tmp_path / "store", streams=RGB, limit=1)
    store = FeatureStore.open(tmp_path / "store")
    first = {split: next(c for c in index.clips if c.split == split) for split in ("train", "test")}
    assert store.clip_ids("train") == (first["train"].clip_id,)
    assert store.clip_ids("test") == (first["test"].clip_id,)
    assert store.classes == ("MoveLeft", "MoveRight") and store.manifest.name == "ucf101-split1"
    assert store.manifest.provenance["limit"] == 1 and len(report.extracted) == 2


def test_an_existing_store_is_not_overwritten(index, reference):
    with pytest.raises(ExtractError, match="already holds a feature store"):
        extract(index, reference[0].store)


def test_features_are_the_checkpoints_backbone_on_the_frames_each_view_samples(index, tmp_path):
    torch.manual_seed(5)
    model = create_backbone("resnet3d_18")
    for m in model.modules():  # running statistics that a load skipping buffers would miss
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    checkpoint = tmp_path / "r3d18_K_200ep.pth"
    torch.save({"arch": "resnet3d_18", "state_dict": OrderedDict(
        (f"module.{k}", v) for k, v in model.state_dict().items())}, checkpoint)
    rgb = {"rgb": {"arch": "resnet3d_18", "checkpoint": str(checkpoint), "normalization": "kinetics"}}
    extract_store(index, config(rgb, dtype="float32"), tmp_path / "store", train_views=2, seed=3,
                  batch_size=4, progress=False)
    store = FeatureStore.open(tmp_path / "store")

    loaded = create_backbone("resnet3d_18")
    load_backbone_checkpoint(loaded, checkpoint)
    backbone = FrozenBackbone(loaded)
    for clip in index.clips:
        frames = read_frames(clip.path, 16)
        row = store.clip_ids(clip.split).index(clip.clip_id)
        for view in range(store.n_views(clip.split)):  # train: views 0 and 1; test: view 0, equidistant
            indices = sampled_frames(len(frames), train=clip.split == "train",
                                     rng=view_rng(3, clip.clip_id, view), n_segments=8)
            x = torch.from_numpy(frames[indices]).permute(3, 0, 1, 2)[None].float() / 255
            expected = backbone(normalize_clip(x, "kinetics"))
            for layer in ("layer3", "layer4"):
                got = store.layer_array("rgb", layer, clip.split, view)[row]
                np.testing.assert_allclose(got, expected[layer][0].numpy(), rtol=1e-4, atol=1e-5)
    record = store.manifest.provenance["backbones"]["rgb"]
    assert record["checkpoint"] == "r3d18_K_200ep.pth" and record["random_init"] is False
    assert record["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert "WARNING" not in store.manifest.provenance


def test_missing_cuda_is_a_clear_error(index, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ExtractError, match="no CUDA device"):
        extract(index, tmp_path / "store", device="cuda")


def test_partial_dir_of_a_finished_store_is_gone_and_a_leftover_tmp_shard_is_ignored(index, tmp_path):
    out = tmp_path / "store"
    interrupted(index, out, after=1, streams=RGB)
    clips = tmp_path / "store.partial" / "clips"
    shutil.copy(next(clips.glob("*.npz")), clips / f"{index.clips[-1].clip_id}.npz.tmp")  # a crash mid-write
    report = extract(index, out, streams=RGB)
    assert index.clips[-1].clip_id in report.extracted and len(report.resumed) == 1
