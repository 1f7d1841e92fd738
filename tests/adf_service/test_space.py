"""Search space settings: thesis ranges, K dividing the channels, edge counts."""

import pytest

from adf_service.space import (
    MIN_MIXED_OP_CHANNELS,
    SearchSpace,
    SearchSpaceError,
    edges_per_cell,
    mixed_op_channels,
    node_edge_slices,
)


@pytest.mark.parametrize("n_inputs, expected", [(1, 10), (2, 14), (3, 18)])
def test_edges_per_cell_is_4_times_i_minus_1_plus_10(n_inputs, expected):
    assert edges_per_cell(n_inputs) == expected == 4 * (n_inputs - 1) + 10


def test_node_slices_cover_every_edge_once():
    slices = node_edge_slices(3)
    assert [s.stop - s.start for s in slices] == [3, 4, 5, 6]
    assert slices[-1].stop == edges_per_cell(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"operators": "S3"}, r"operators 'S3' not in \{S1, S2\}"),
        ({"n_inputs": 4}, r"inputs I=4 not in"),
        ({"n_cells": 0}, r"cells C=0 not in"),
        ({"n_cells": 5}, r"cells C=5 not in"),
        ({"channels": 30, "partial_k": 4}, r"K=4 does not divide channels=30"),
        ({"partial_k": 0}, r"partial_k K=0"),
    ],
)
def test_bad_settings_name_the_value_and_allowed_values(kwargs, message):
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace(**kwargs)


def test_space_round_trips_through_a_dict():
    space = SearchSpace("S1", 3, 4, 64, 2)
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(SearchSpaceError, match="unknown search-space keys"):
        SearchSpace.from_dict({**space.to_dict(), "layers": 3})


@pytest.mark.parametrize("channels, partial_k, expected", [(512, 4, 128), (16, 4, 4), (16, 1, 16)])
def test_mixed_op_channels_is_c_over_k(channels, partial_k, expected):
    assert mixed_op_channels(channels, partial_k) == expected


def test_thin_mixed_ops_fall_below_the_minimum_that_learned():
    # Issue 12: C = 16, K = 4 never learned; K = 1 did.
    assert mixed_op_channels(16, 4) < MIN_MIXED_OP_CHANNELS <= mixed_op_channels(16, 1)
    assert mixed_op_channels(512, 4) >= MIN_MIXED_OP_CHANNELS  # the thesis' setting


@pytest.mark.parametrize("channels, partial_k", [(30, 4), (16, 0), (0, 1)])
def test_mixed_op_channels_refuses_k_that_does_not_divide_c(channels, partial_k):
    with pytest.raises(SearchSpaceError, match=f"partial_k K={partial_k} and channels={channels}"):
        mixed_op_channels(channels, partial_k)
