"""Operators: exact weight counts of thesis tables 1 and 2, shape preservation, registry errors."""

import pytest
import torch

from adf_service.ops import OPS, UnknownOperatorError, conv_weight_count, create_op, r2plus1d_mid_channels
from adf_service.space import OPERATOR_SETS

TABLE_COUNTS_AT_512 = {
    "conv_1x1x1": 262_144,
    "conv_3x3x3": 7_077_888,
    "sep_conv_3x3x3": 551_936,
    "dil_conv_3x3x3": 7_077_888,
    "conv_2plus1d_3x3x3": 7_077_888,  # S1, mid channels 1152
    "conv_2plus1d_3x3x3_narrow": 3_145_728,  # S2, mid channels 512
    "flat_conv_3x3x3": 2_359_296,
    "skip": 0,
    "zero": 0,
}


@pytest.mark.parametrize("name", sorted(TABLE_COUNTS_AT_512))
def test_conv_weight_counts_match_thesis_tables_at_512_channels(name):
    with torch.device("meta"):
        op = create_op(name, 512)
    assert conv_weight_count(op) == TABLE_COUNTS_AT_512[name]


def test_registry_holds_exactly_the_operators_of_s1_and_s2():
    assert set(OPS) == set(OPERATOR_SETS["S1"]) | set(OPERATOR_SETS["S2"])


def test_s1_two_plus_one_d_uses_r2plus1d_equal_parameter_rule():
    assert r2plus1d_mid_channels(512) == 1152
    assert r2plus1d_mid_channels(128) == 288  # scales with the partial channels


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_operator_keeps_the_shape(name):
    x = torch.randn(2, 8, 4, 7, 7)
    assert create_op(name, 8)(x).shape == x.shape


@pytest.mark.parametrize("name", sorted(set(OPS) - {"skip", "zero"}))
def test_parametric_operators_are_relu_op_bn(name):
    op = create_op(name, 8, affine=False)
    layers = [m for m in op.modules() if not isinstance(m, torch.nn.Sequential)]
    assert isinstance(layers[0], torch.nn.ReLU)
    assert isinstance(layers[-1], torch.nn.BatchNorm3d)
    assert not layers[-1].affine


def test_zero_outputs_zeros_and_skip_is_identity():
    x = torch.randn(2, 4, 2, 3, 3)
    assert torch.equal(create_op("zero", 4)(x), torch.zeros_like(x))
    assert torch.equal(create_op("skip", 4)(x), x)


def test_unknown_operator_names_the_known_ones():
    with pytest.raises(UnknownOperatorError, match="'max_pool'.*conv_1x1x1"):
        create_op("max_pool", 8)
