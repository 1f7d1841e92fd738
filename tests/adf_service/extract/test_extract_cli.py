"""`adf-service extract` end to end: toy videos → feature store → a short search on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adf_service.extract import write_toy_dataset
from adf_service.extract.backbones import backbone_output_shapes
from adf_service.features import FeatureStore
from api.cli import app

EXAMPLES = Path(__file__).parents[3] / "examples"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def extract_args(videos, splits, config, out, *more):
    return ("extract", "--dataset", "hmdb51", "--videos", videos, "--splits", splits, "--split", 1,
            "--config", config, "--out", out, "--device", "cpu", "--quiet", *more)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    videos, splits = write_toy_dataset(root, layout="hmdb51", classes=3, clips_per_class=4, test_per_class=1,
                                       frames=40, size=64)
    shutil.copy(EXAMPLES / "extract-toy.yaml", root / "extract-toy.yaml")
    return videos, splits, root / "extract-toy.yaml"


def test_extract_writes_a_store_that_a_search_runs_on(toy, tmp_path):
    videos, splits, config = toy
    store_dir = tmp_path / "store"
    result = invoke(*extract_args(videos, splits, config, store_dir, "--train-views", 2, "--seed", 4,
                                  "--batch-size", 6))
    assert result.exit_code == 0, result.output
    assert "12 clips (test 3, train 9)" in result.stdout and "12 extracted, 0 resumed, 0 failed" in result.stdout
    assert "RANDOM-INIT BACKBONES for rgb, flow, pose" in result.output

    store = FeatureStore.open(store_dir)
    assert store.modalities == ("rgb", "flow", "pose")
    assert store.classes == ("move_down", "move_left", "move_right")
    assert {s: store.clip_count(s) for s in store.splits} == {"train": 9, "test": 3}
    assert store.n_views("train") == 2 and store.n_views("test") == 1
    shapes = backbone_output_shapes("resnet3d_18", (16, 32, 32))  # the toy config's frames and size
    assert all(store.layer_shape(m, "layer4") == shapes["layer4"] == (512, 1, 1, 1) for m in store.modalities)
    assert all(store.layer_shape(m, "layer3") == shapes["layer3"] for m in store.modalities)
    provenance = store.manifest.provenance
    assert provenance["seed"] == 4 and provenance["backbones"]["pose"]["pose_placeholder"] is True

    run = tmp_path / "run"
    result = invoke("search", store_dir, "--out", run, "--channels", 8, "--epochs", 1, "--warmup", 0,
                    "--batch-size", 4, "--inputs", 1, "--cells", 1, "--device", "cpu")
    assert result.exit_code == 0, result.output
    genotype = json.loads((run / "genotype.json").read_text())
    assert len(genotype["cells"]) == 1
    assert len(json.loads((run / "history.json").read_text())) == 1


def test_a_corrupt_video_is_listed_with_its_reason_and_the_rest_is_extracted(tmp_path):
    videos, splits = write_toy_dataset(tmp_path / "toy", classes=2, clips_per_class=3, frames=24, size=32)
    broken = sorted((videos / "move_left").glob("*.avi"))[0]
    broken.write_bytes(b"\x00" * 100)
    config = tmp_path / "extract.yaml"
    config.write_text("frames: 8\nsize: 16\nrgb: {arch: resnet3d_18, checkpoint: null, random_init: true}\n")
    result = invoke(*extract_args(videos, splits, config, tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert "1 clip(s) left out of the store" in result.output and broken.stem in result.output
    assert "5 extracted, 0 resumed, 1 failed" in result.stdout
    store = FeatureStore.open(tmp_path / "store")
    assert broken.stem not in store.clip_ids("train") + store.clip_ids("test")
    assert store.manifest.provenance["failed_clips"][0]["clip_id"] == broken.stem


def test_a_bad_config_is_an_error_with_its_line_and_no_store(toy, tmp_path):
    videos, splits, _ = toy
    config = tmp_path / "extract.yaml"
    config.write_text("rgb:\n  random_init: true\n  arch: resnet3d_50\n")
    result = invoke(*extract_args(videos, splits, config, tmp_path / "store"))
    assert result.exit_code == 2
    assert "extract.yaml line 3: rgb.arch: 'resnet3d_50' not in" in result.output
    assert not (tmp_path / "store").exists()


def test_an_unknown_dataset_or_missing_videos_are_errors(toy, tmp_path):
    videos, splits, config = toy
    result = invoke(*extract_args(tmp_path / "nowhere", splits, config, tmp_path / "store"))
    assert result.exit_code == 2 and "videos directory" in result.output and "nowhere" in result.output
    args = list(extract_args(videos, splits, config, tmp_path / "store"))
    args[args.index("hmdb51")] = "kinetics"
    result = invoke(*args)
    assert result.exit_code == 2 and "'kinetics' not in {hmdb51, ucf101}" in result.output
