"""Frozen 3D backbones: shapes, checkpoint layout and loading, freezing, input scaling."""

from __future__ import annotations

import argparse
from collections import OrderedDict

import pytest
import torch

from adf_service.extract.backbones import (
    BACKBONES,
    INPUT_NORMALIZATION,
    STAGES,
    THESIS_BACKBONES,
    BackboneError,
    FrozenBackbone,
    backbone_output_shapes,
    create_backbone,
    load_backbone_checkpoint,
    normalize_clip,
)

SMALL_CLIP = (16, 32, 32)
# docs/design.md §2: layer3 / layer4 [C, T, H, W] for a 64×112×112 clip.
DESIGN_SHAPES = {
    "r2plus1d_50": {"layer3": (1024, 8, 7, 7), "layer4": (2048, 4, 4, 4)},
    "resnext3d_101": {"layer3": (1024, 8, 7, 7), "layer4": (2048, 4, 4, 4)},
    "resnet3d_18": {"layer3": (256, 8, 7, 7), "layer4": (512, 4, 4, 4)},
}


def clip(batch: int = 1, channels: int = 3, size: tuple[int, int, int] = SMALL_CLIP,
         seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet3d_18").eval()


def randomize_bn_stats(model: torch.nn.Module, seed: int) -> None:
    """Non-default running statistics, so a load that skips buffers would show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def as_public_checkpoint(state: dict[str, torch.Tensor], n_classes: int = 700, c_out: int = 512) -> dict:
    """What 3D-ResNets-PyTorch's main.py saves: DataParallel keys, an fc head, optimizer state."""
    full = OrderedDict((f"module.{k}", v) for k, v in state.items())
    full["module.fc.weight"] = torch.randn(n_classes, c_out)
    full["module.fc.bias"] = torch.zeros(n_classes)
    bias = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([bias], lr=0.1, momentum=0.9)
    bias.sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[50, 100])
    return {"epoch": 3, "arch": "resnet-18", "state_dict": full,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", sorted(DESIGN_SHAPES))
def test_output_shapes_for_a_64x112x112_clip_are_the_design_numbers(arch):
    shapes = backbone_output_shapes(arch)
    assert {k: shapes[k] for k in ("layer3", "layer4")} == DESIGN_SHAPES[arch]


def test_output_shapes_do_not_depend_on_the_input_channels():
    assert backbone_output_shapes("resnext3d_101", in_channels=2) == backbone_output_shapes("resnext3d_101")


@pytest.mark.parametrize("arch,in_channels", [("resnet3d_18", 3), ("resnext3d_101", 2), ("r2plus1d_50", 3),
                                              ("r2plus1d_50", 2)])
def test_taps_of_a_small_clip_have_the_predicted_shapes(arch, in_channels):
    model = create_backbone(arch, in_channels).eval()
    with torch.no_grad():
        out = model(clip(batch=2, channels=in_channels), taps=STAGES)
    predicted = backbone_output_shapes(arch, SMALL_CLIP, in_channels)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, *s) for k, s in predicted.items()}
    c3, c4 = DESIGN_SHAPES[arch]["layer3"][0], DESIGN_SHAPES[arch]["layer4"][0]
    assert predicted["layer3"] == (c3, 2, 2, 2) and predicted["layer4"] == (c4, 1, 1, 1)


def test_predicted_shapes_agree_with_a_real_resnet18_forward_at_full_size(resnet18):
    with torch.no_grad():
        out = resnet18(clip(size=(64, 112, 112)), taps=("layer3", "layer4"))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == DESIGN_SHAPES["resnet3d_18"]
    predicted = backbone_output_shapes("resnet3d_18")
    assert {k: predicted[k] for k in out} == DESIGN_SHAPES["resnet3d_18"]


def test_forward_stops_after_the_deepest_tap(resnet18):
    ran = []
    handles = [getattr(resnet18, name).register_forward_hook(lambda m, i, o, name=name: ran.append(name))
               for name in STAGES]
    try:
        with torch.no_grad():
            out = resnet18(clip(), taps=("layer2",))
    finally:
        for h in handles:
            h.remove()
    assert list(out) == ["layer2"]
    assert ran == ["layer1", "layer2"]


def test_unknown_backbone_is_refused_with_the_known_names():
    with pytest.raises(BackboneError, match="resnet3d_50.*r2plus1d_50.*resnet3d_18.*resnext3d_101"):
        create_backbone("resnet3d_50")


def test_unknown_tap_and_wrong_input_channels_are_refused(resnet18):
    with pytest.raises(BackboneError, match="'avgpool'"):
        resnet18(clip(), taps=("layer3", "avgpool"))
    with pytest.raises(BackboneError, match=r"C_in=3.*\[1, 2, 16, 32, 32\]"):
        resnet18(clip(channels=2))
    with pytest.raises(BackboneError, match="torch.uint8"):
        resnet18(clip().to(torch.uint8))


# ----------------------------------------------------------------------------- checkpoint layout

# Parameter names and shapes of the public checkpoints, as the reference code builds them:
# 3D-ResNets-PyTorch master models/resnet.py and models/resnet2p1d.py; the CVPR2018 branch's
# models/resnext.py (= video-classification-3d-cnn-pytorch's = MARS's, with input_channels).
REFERENCE_SHAPES = {
    ("resnet3d_18", 3): {
        "conv1.weight": (64, 3, 7, 7, 7),
        "layer1.1.conv2.weight": (64, 64, 3, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer4.1.bn2.weight": (512,),
    },
    ("resnext3d_101", 2): {
        "conv1.weight": (64, 2, 7, 7, 7),
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3, 3),
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
        "layer3.22.conv2.weight": (512, 16, 3, 3, 3),
        "layer3.22.bn3.running_mean": (1024,),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1),
        "layer4.2.conv2.weight": (1024, 32, 3, 3, 3),
    },
    ("r2plus1d_50", 3): {
        "conv1_s.weight": (110, 3, 1, 7, 7),
        "bn1_s.running_mean": (110,),
        "conv1_t.weight": (64, 110, 7, 1, 1),
        "bn1_t.weight": (64,),
        "layer1.0.conv2_s.weight": (144, 64, 1, 3, 3),
        "layer1.0.conv2_t.weight": (64, 144, 3, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
        "layer3.5.conv2_s.weight": (576, 256, 1, 3, 3),
        "layer4.0.conv2_s.weight": (1152, 512, 1, 3, 3),
        "layer4.0.conv2_t.weight": (512, 1152, 3, 1, 1),
        "layer4.2.conv3.weight": (2048, 512, 1, 1, 1),
    },
}


@pytest.mark.parametrize("arch,in_channels", sorted(REFERENCE_SHAPES))
def test_key_layers_have_the_public_checkpoints_names_and_shapes(arch, in_channels):
    with torch.device("meta"):
        state = create_backbone(arch, in_channels).state_dict()
    reference = REFERENCE_SHAPES[arch, in_channels]
    assert {k: tuple(state[k].shape) for k in reference} == reference
    assert not any(k.startswith(("fc.", "avgpool")) for k in state)
    assert all(f"{stage}.0.downsample.0.weight" in state for stage in ("layer2", "layer3", "layer4"))


def test_r2plus1d_stem_keeps_110_mid_channels_for_a_flow_input():
    with torch.device("meta"):
        state = create_backbone("r2plus1d_50", in_channels=2).state_dict()
    assert tuple(state["conv1_s.weight"].shape) == (110, 2, 1, 7, 7)


def _conv_bn(c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    return c_in // groups * c_out * kernel + 2 * c_out


def _expected_parameters(arch: str, c_in: int) -> int:
    """Closed-form parameter count (weights + BN affine) of each architecture, without fc."""
    if arch == "r2plus1d_50":
        total = _conv_bn(c_in, 110, 49) + _conv_bn(110, 64, 7)
    else:
        total = _conv_bn(c_in, 64, 343)
    depths = {"resnet3d_18": (2, 2, 2, 2), "resnext3d_101": (3, 4, 23, 3), "r2plus1d_50": (3, 4, 6, 3)}[arch]
    c = 64
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        for block in range(depth):
            if arch == "resnet3d_18":
                out = planes
                total += _conv_bn(c, planes, 27) + _conv_bn(planes, planes, 27)
            elif arch == "resnext3d_101":
                width, out = 2 * planes, 4 * planes  # planes 128/256/512/1024, expansion 2; mid = planes
                total += (_conv_bn(c, width, 1) + _conv_bn(width, width, 27, groups=32)
                          + _conv_bn(width, out, 1))
            else:
                out, mid = 4 * planes, (27 * planes) // 12
                total += (_conv_bn(c, planes, 1) + _conv_bn(planes, mid, 9) + _conv_bn(mid, planes, 3)
                          + _conv_bn(planes, out, 1))
            if block == 0 and (i > 0 or c != out):
                total += _conv_bn(c, out, 1)
            c = out
    return total


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_parameter_count_matches_the_closed_form(arch):
    with torch.device("meta"):
        model = create_backbone(arch)
    n = sum(p.numel() for p in model.parameters())
    assert n == _expected_parameters(arch, 3)
    # 33.20M, 47.52M, 46.22M: with the 400-class fc of Hara et al. 2018, ResNeXt-101 has 48.3M.
    assert round(n / 1e6, 2) == {"resnet3d_18": 33.20, "resnext3d_101": 47.52, "r2plus1d_50": 46.22}[arch]


# ----------------------------------------------------------------------------- loading


def test_public_style_checkpoint_loads_and_gives_the_same_features(tmp_path, resnet18):
    randomize_bn_stats(resnet18, seed=1)
    path = tmp_path / "r3d18_K_200ep.pth"
    torch.save(as_public_checkpoint(resnet18.state_dict()), path)
    fresh = create_backbone("resnet3d_18")
    load_backbone_checkpoint(fresh, path)
    x = clip(batch=2)
    expected, got = FrozenBackbone(resnet18)(x), FrozenBackbone(fresh)(x)
    assert all(torch.equal(expected[k], got[k]) for k in ("layer3", "layer4"))


def test_legacy_format_bare_state_dict_without_num_batches_tracked_loads(tmp_path, resnet18):
    # Like a file written by PyTorch < 0.4.1 (the 2018 ResNeXt-101): the pre-zip format and
    # no num_batches_tracked buffers.
    state = {k: v for k, v in resnet18.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bare.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    fresh = create_backbone("resnet3d_18")
    load_backbone_checkpoint(fresh, path)
    assert torch.equal(fresh.layer4[1].bn2.running_var, resnet18.layer4[1].bn2.running_var)
    assert torch.equal(fresh.conv1.weight, resnet18.conv1.weight)


def test_checkpoint_under_a_model_key_loads_from_a_str_path(tmp_path, resnet18):
    path = tmp_path / "model_key.pth"
    torch.save({"model": resnet18.state_dict()}, path)
    fresh = create_backbone("resnet3d_18")
    load_backbone_checkpoint(fresh, str(path))
    assert torch.equal(fresh.layer3[0].downsample[0].weight, resnet18.layer3[0].downsample[0].weight)


def test_missing_unexpected_and_misshapen_keys_are_all_listed(tmp_path, resnet18):
    state = dict(resnet18.state_dict())
    for k in [k for k in state if k.startswith("layer4.1.")]:
        del state[k]  # 12 keys; the 2 num_batches_tracked are refilled, 10 stay missing
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 3, 3, 1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state, "arch": "resnet-34"}, path)
    with pytest.raises(BackboneError) as error:
        load_backbone_checkpoint(create_backbone("resnet3d_18"), path)
    message = str(error.value)
    assert f"{path}: checkpoint does not fit resnet3d_18 (the file says arch 'resnet-34')" in message
    assert "10 missing keys: layer4.1.conv1.weight, layer4.1.bn1.weight" in message
    assert "1 unexpected keys: layer5.0.conv1.weight" in message
    assert "layer2.0.conv1.weight: model [128, 64, 3, 3, 3], file [128, 64, 3, 3, 1]" in message


def test_long_key_lists_are_cut_with_a_count(tmp_path):
    path = tmp_path / "other_net.pth"
    torch.save({f"head.{i}.weight": torch.zeros(1) for i in range(25)}, path)
    with pytest.raises(BackboneError, match=r"25 unexpected keys: head\.0\.weight.* \(\+15 more\)") as error:
        load_backbone_checkpoint(create_backbone("resnet3d_18"), path)
    assert "missing keys: conv1.weight" in str(error.value)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", "truncated"])
def test_files_that_are_not_checkpoints_are_refused_by_name(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save({"state_dict": {"conv1.weight": torch.randn(64, 3, 7, 7, 7)}}, path)
        path.write_bytes(path.read_bytes()[:50_000])
    else:
        path.write_bytes(content)
    with pytest.raises(BackboneError, match=f"{path}: not a readable torch checkpoint"):
        load_backbone_checkpoint(create_backbone("resnet3d_18"), path)


def test_missing_file_is_refused_by_name(tmp_path):
    with pytest.raises(BackboneError, match="nowhere.pth: no such checkpoint file"):
        load_backbone_checkpoint(create_backbone("resnet3d_18"), tmp_path / "nowhere.pth")


def test_checkpoint_holding_arbitrary_objects_is_not_unpickled(tmp_path, resnet18):
    path = tmp_path / "with_opts.pth"
    torch.save({"state_dict": resnet18.state_dict(), "opt": argparse.Namespace(model="resnet")}, path)
    with pytest.raises(BackboneError, match=r"argparse\.Namespace.*arbitrary code.*weights_only=False"):
        load_backbone_checkpoint(create_backbone("resnet3d_18"), path)


def test_rgb_checkpoint_into_a_flow_model_needs_adaptation(tmp_path, resnet18):
    path = tmp_path / "r3d18_K_200ep.pth"
    torch.save(as_public_checkpoint(resnet18.state_dict()), path)
    flow_model = create_backbone("resnet3d_18", in_channels=2)
    with pytest.raises(BackboneError, match="conv1.weight takes 3 input channels, the model 2"):
        load_backbone_checkpoint(flow_model, path)

    load_backbone_checkpoint(flow_model, path, adapt_input_channels=True)
    mean = resnet18.conv1.weight.mean(dim=1)
    assert all(torch.allclose(flow_model.conv1.weight[:, c], mean) for c in (0, 1))
    assert torch.equal(flow_model.layer1[0].conv1.weight, resnet18.layer1[0].conv1.weight)


def test_r2plus1d_adapts_its_spatial_stem_conv(tmp_path):
    rgb = create_backbone("r2plus1d_50")
    path = tmp_path / "r2p1d50_K_200ep.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)
    flow_model = create_backbone("r2plus1d_50", in_channels=2)
    load_backbone_checkpoint(flow_model, path, adapt_input_channels=True)
    assert torch.allclose(flow_model.conv1_s.weight[:, 1], rgb.conv1_s.weight.mean(dim=1))
    assert torch.equal(flow_model.conv1_t.weight, rgb.conv1_t.weight)


# ----------------------------------------------------------------------------- freezing


def test_frozen_backbone_has_no_gradients_and_stays_in_eval():
    backbone = FrozenBackbone(create_backbone("resnet3d_18"), taps=("layer3",))
    backbone.train()
    assert not backbone.training and not backbone.model.training
    assert not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())
    out = backbone(clip().requires_grad_(True))
    assert list(out) == ["layer3"] and not out["layer3"].requires_grad


def test_frozen_backbone_leaves_batchnorm_statistics_unchanged():
    backbone = FrozenBackbone(create_backbone("resnet3d_18"))
    backbone.model.train()  # even a direct call on the inner model
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone(clip(batch=2) * 5 + 3)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_frozen_backbone_refuses_unknown_taps():
    with pytest.raises(BackboneError, match="fc"):
        FrozenBackbone(create_backbone("resnet3d_18"), taps=("fc",))


# ----------------------------------------------------------------------------- input scaling


def test_kinetics_normalization_centres_the_dataset_mean():
    mean, std = INPUT_NORMALIZATION["kinetics"]
    x = torch.tensor(mean).view(1, 3, 1, 1, 1).expand(2, 3, 4, 5, 5)
    assert torch.allclose(normalize_clip(x, "kinetics"), torch.zeros(()), atol=1e-6)
    one_std = torch.tensor(mean).add(torch.tensor(std)).view(3, 1, 1, 1).expand(3, 4, 5, 5)
    assert torch.allclose(normalize_clip(one_std, "kinetics"), torch.ones(()))


def test_mars_flow_normalization_gives_the_8bit_centred_scale():
    # MARS: clip(f, ±20) → (f + 20)/40·255 → − 127.5; flow.py's default output is clip(f, ±20)/20.
    flow_px = torch.tensor([-20.0, -5.0, 0.0, 12.0]).view(1, 1, 1, 4).expand(2, 3, 1, 4)
    expected = (flow_px + 20) / 40 * 255 - 127.5
    assert torch.allclose(normalize_clip(flow_px / 20, "mars_flow"), expected, atol=1e-4)


def test_normalization_refuses_unknown_conventions_and_too_many_channels():
    with pytest.raises(BackboneError, match="imagenet.*hara2018.*kinetics.*mars_flow"):
        normalize_clip(torch.zeros(3, 4, 5, 5), "imagenet")
    with pytest.raises(BackboneError, match=r"C≤2.*\[3, 4, 5, 5\]"):
        normalize_clip(torch.zeros(3, 4, 5, 5), "mars_flow")


def test_thesis_backbones_name_known_archs_and_conventions():
    for stream in THESIS_BACKBONES.values():
        assert stream.arch in BACKBONES and stream.normalization in INPUT_NORMALIZATION
        assert len(INPUT_NORMALIZATION[stream.normalization][0]) >= stream.in_channels
    assert THESIS_BACKBONES["flow"].in_channels == 2


# ----------------------------------------------------------------------------- full size


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(DESIGN_SHAPES))
def test_full_size_forward_gives_the_design_shapes(arch):
    in_channels = THESIS_BACKBONES[next(s for s, b in THESIS_BACKBONES.items() if b.arch == arch)].in_channels
    backbone = FrozenBackbone(create_backbone(arch, in_channels))
    out = backbone(clip(channels=in_channels, size=(64, 112, 112)))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, *s) for k, s in DESIGN_SHAPES[arch].items()}
    assert all(torch.isfinite(v).all() for v in out.values())
