"""extract.yaml: defaults are the thesis', relative paths, and errors that name the line and key."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from adf_service.extract.backbones import THESIS_BACKBONES
from adf_service.extract.config import (
    ExtractConfigError,
    FlowSpec,
    RgbSpec,
    load_extract_config,
    parse_extract_config,
)
from adf_service.extract.pose import PrecomputedPose

EXAMPLES = Path(__file__).parents[3] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extract.yaml"
    path.write_text(text)
    return path


def test_a_stream_defaults_to_the_thesis_backbone_input_and_scaling(tmp_path):
    (tmp_path / "w.pth").touch()
    config = parse_extract_config({"rgb": {"checkpoint": "w.pth"}, "flow": {"checkpoint": "w.pth"},
                                   "pose": {"checkpoint": "w.pth", "extractor": "zeros"}}, base_dir=tmp_path)
    for modality, spec in config.streams().items():
        thesis = THESIS_BACKBONES[modality]
        assert (spec.arch, spec.in_channels, spec.normalization) == (
            thesis.arch, thesis.in_channels, thesis.normalization)
    assert (config.frames, config.size, config.dtype) == (64, 112, "float16")
    assert (config.flow.method, config.flow.bound) == ("auto", 20.0)


def test_streams_are_any_subset_in_the_thesis_order(tmp_path):
    config = parse_extract_config({"pose": {"random_init": True, "extractor": "zeros"},
                                   "rgb": {"random_init": True}})
    assert list(config.streams()) == ["rgb", "pose"]
    assert isinstance(config.streams()["rgb"], RgbSpec)


def test_relative_paths_resolve_against_the_yaml_files_directory(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "r3d18_K_200ep.pth").touch()
    path = write(tmp_path, "rgb: {checkpoint: ckpt/r3d18_K_200ep.pth}\n"
                           "pose: {random_init: true, extractor: precomputed, options: {root: renderings}}\n")
    config = load_extract_config(path)
    assert config.rgb.checkpoint == tmp_path / "ckpt" / "r3d18_K_200ep.pth"
    assert config.pose.options["root"] == tmp_path / "renderings"
    extractor = config.pose.create_extractor()
    assert isinstance(extractor, PrecomputedPose) and extractor.root == tmp_path / "renderings"


@pytest.mark.parametrize(("text", "message"), [
    ("rgb:\n  random_init: true\n  arch: resnet50\n",
     r"line 3: rgb\.arch: 'resnet50' not in \{resnet3d_18, resnext3d_101, r2plus1d_50\}"),
    ("flow:\n  random_init: true\n  method: tvl2\n", r"line 3: flow\.method: 'tvl2' not in \{auto, tvl1, farneback\}"),
    ("rgb: {random_init: true, normalization: imagenet}\n",
     r"line 1: rgb\.normalization: 'imagenet' not in \{kinetics, hara2018, mars_flow\}"),
    ("frames: 64\nrgb: {random_init: true}\ncolour: 3\n",
     r"line 3: colour: unknown key \(allowed: rgb, flow, pose, frames, size, dtype\)"),
    ("rgb: {random_init: true, weights: a.pth}\n", r"line 1: rgb\.weights: unknown key \(allowed: arch, checkpoint"),
    ("rgb: {random_init: true}\ndtype: float64\n", r"line 2: dtype: 'float64' not in \{float16, float32\}"),
    ("size: 112\n", r"extract\.yaml: gives no modality; give at least one of rgb, flow, pose"),
    ("rgb:\n  arch: resnet3d_18\n", r"line 1: rgb: needs a checkpoint .*`checkpoint: null` is allowed only with "
                                    r"`random_init: true`"),
    ("flow: {random_init: true, in_channels: 3}\n",
     r"line 1: flow: in_channels 3, but this modality's input has 2 channels.*adapt_input_channels"),
    ("flow: {random_init: true, bound: 0}\n", r"line 1: flow\.bound: .*greater than 0"),
    ("pose: {random_init: true}\n", r"line 1: pose\.extractor: required key missing"),
    ("pose: {random_init: true, extractor: openpose}\n",
     r"line 1: pose\.extractor: 'openpose' not in \{precomputed, zeros"),
    ("pose: {random_init: true, extractor: precomputed, options: {root: r, stride: 2}}\n",
     r"line 1: pose: pose extractor 'precomputed' takes options \(root.*'stride'"),
    ("rgb: [1, 2\n", r"extract\.yaml line 2: YAML syntax error: "),
    ("- rgb\n", r"expected a mapping of keys"),
])
def test_a_bad_config_names_the_line_the_key_and_the_allowed_values(tmp_path, text, message):
    with pytest.raises(ExtractConfigError, match=message):
        load_extract_config(write(tmp_path, text))


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path, "frames: 16\nrgb:\n  random_init: true\n  arch: resnet3d_18\n  arch: r2plus1d_50\n")
    with pytest.raises(ExtractConfigError) as error:
        load_extract_config(path)
    assert str(error.value) == (
        f"{path} line 5: rgb.arch: given twice (first on line 4); YAML would keep only the last")
    assert error.value.problems[0].line == 5


def test_a_misspelt_key_gets_a_suggestion_as_in_grid_yaml(tmp_path):
    path = write(tmp_path, "rgb:\n  random_init: true\n  checkpont: w.pth\nframez: 16\n")
    with pytest.raises(ExtractConfigError) as error:
        load_extract_config(path)
    assert str(error.value).splitlines() == [
        f"{path} line 3: rgb.checkpont: unknown key (did you mean 'checkpoint'?)",
        f"{path} line 4: framez: unknown key (did you mean 'frames'?)",
    ]


def test_an_alias_is_refused_on_its_line(tmp_path):
    path = write(tmp_path, "rgb: &stream {random_init: true}\nflow: *stream\n")
    with pytest.raises(ExtractConfigError, match=r"line 2: YAML alias \*stream is not allowed"):
        load_extract_config(path)


def test_the_error_survives_pickling(tmp_path):
    with pytest.raises(ExtractConfigError) as error:
        load_extract_config(write(tmp_path, "frames: 0\nrgb: {random_init: true}\n"))
    copy = pickle.loads(pickle.dumps(error.value))
    assert isinstance(copy, ExtractConfigError) and str(copy) == str(error.value)


def test_a_missing_checkpoint_file_is_named(tmp_path):
    path = write(tmp_path, "frames: 16\nflow:\n  checkpoint: ckpt/Flow_Kinetics_16f.pth\n")
    with pytest.raises(ExtractConfigError, match=rf"line 3: flow\.checkpoint: checkpoint file "
                                                 rf"{tmp_path}/ckpt/Flow_Kinetics_16f\.pth does not exist"):
        load_extract_config(path)


def test_a_checkpoint_and_random_init_together_are_refused(tmp_path):
    (tmp_path / "w.pth").touch()
    with pytest.raises(ExtractConfigError, match="gives both checkpoint .*w.pth and random_init: true"):
        load_extract_config(write(tmp_path, "rgb: {checkpoint: w.pth, random_init: true}\n"))


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ExtractConfigError) as error:
        load_extract_config(write(tmp_path, "frames: 0\nrgb: {random_init: true, arch: x}\n"))
    assert len(str(error.value).splitlines()) == 2


def test_the_thesis_example_names_the_thesis_backbones_and_loads_with_its_checkpoints(tmp_path):
    text = (EXAMPLES / "extract-thesis.yaml").read_text()
    for name in ("r2p1d50_K_200ep.pth", "Flow_Kinetics_16f.pth", "r3d18_K_200ep.pth"):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / name).touch()
    config = load_extract_config(write(tmp_path, text))
    for modality, spec in config.streams().items():
        thesis = THESIS_BACKBONES[modality]
        assert (spec.arch, spec.checkpoint.name, spec.in_channels, spec.normalization) == (
            thesis.arch, thesis.checkpoint, thesis.in_channels, thesis.normalization)
    assert isinstance(config.flow, FlowSpec) and config.flow.method == "tvl1"
    assert (config.frames, config.size) == (64, 112)


def test_the_toy_example_needs_no_checkpoint_and_uses_farneback_flow(tmp_path):
    shutil.copy(EXAMPLES / "extract-toy.yaml", tmp_path / "extract-toy.yaml")
    config = load_extract_config(tmp_path / "extract-toy.yaml")
    assert all(spec.random_init for spec in config.streams().values())
    assert config.flow.method == "farneback" and config.pose.extractor == "zeros"
    assert (config.frames, config.size) == (16, 32)
