"""grid.yaml: the example grids load, defaults are the thesis', errors name the key and the line."""

import json
import pickle
import time
from pathlib import Path

import pytest

from trials.spec import (
    MAX_SEED,
    BohbSpec,
    GridSpec,
    GridSpecError,
    SearchHyper,
    SpaceAxes,
    TrainHyper,
    load_grid,
    parse_grid,
    parse_grid_json,
    validate_grid,
)

EXAMPLES = Path(__file__).parents[2] / "examples"
MINIMAL = "name: x\ndataset:\n  store: s\n"  # lines 1–3


def error_of(text: str) -> str:
    with pytest.raises(GridSpecError) as info:
        parse_grid(text, "grid.yaml")
    return str(info.value)


@pytest.mark.parametrize("name", ["grid-thesis.yaml", "grid-smoke.yaml", "grid-reach.yaml", "grid-transfer.yaml",
                                  *(f"study/{p.name}" for p in sorted((EXAMPLES / "study").glob("*.yaml")))])
def test_example_grids_load(name):
    spec = load_grid(EXAMPLES / name)
    assert isinstance(spec, GridSpec)
    if name.startswith("study/"):  # searched vs random vs controls, n = 6 each (docs/synthetic-data.md)
        assert spec.repeats == spec.random.repeats == 6 and spec.controls.enabled


def test_thesis_example_spells_out_exactly_the_defaults():
    assert load_grid(EXAMPLES / "grid-thesis.yaml") == parse_grid(
        "name: thesis-hmdb51-split1\ndataset: {store: features/hmdb51-split1}\n"
    )


def test_defaults_are_the_thesis_values():
    space = SpaceAxes()
    assert (space.operators, space.discretizations, space.inputs, space.cells) == (
        ["S1", "S2"], ["all", "topk"], [1, 2, 3], [1, 2, 3, 4]
    )
    assert (space.channels, space.partial_k) == (512, 4)
    assert SearchHyper().model_dump() == {
        "enabled": True,  # stages 2–3 run; false: a transfer-only job (docs/grid.md)
        "epochs": 50, "warmup_epochs": 5, "batch_size": 64, "lr": 2e-3, "momentum": 0.9,
        "weight_decay": 3e-4, "arch_lr": 3e-4, "arch_weight_decay": 1e-3, "second_order": False,
        # not the thesis': issue 12's method fixes (the thesis' β stays on)
        "snapshot_from": "after_warmup", "learned_margin": 10.0, "edge_norm": True,
    }
    assert TrainHyper().model_dump() == {
        "epochs": 70, "batch_size": 64, "optimizer": "sgd", "lr": 2e-3, "momentum": 0.9, "weight_decay": 3e-4,
    }
    bohb = BohbSpec()
    assert (bohb.iterations, bohb.min_epochs, bohb.max_epochs, bohb.eta) == (10, 2, 70, 3)
    assert (bohb.batch_sizes, bohb.lr, bohb.weight_decay) == ([4, 8, 16, 32], [1e-5, 1e-2], [1e-5, 2e-2])
    assert sorted(bohb.optimizers) == ["adam", "adamw", "sgd"]
    spec = parse_grid(MINIMAL)
    assert (spec.repeats, spec.baselines.repeats, spec.random.repeats) == (6, 6, 6)
    assert len(spec.baselines.combos) == 7 and spec.max_trials == 2000


def test_a_json_body_validates_like_yaml_and_round_trips():
    body = {"name": "j", "dataset": {"store": "s"}, "space": {"inputs": [2]}, "bohb": {"lr": [1e-4, 1e-3]}}
    spec = GridSpec.model_validate(body)
    assert spec.space.inputs == [2] and spec.search.epochs == 50 and spec.bohb.lr == [1e-4, 1e-3]
    assert validate_grid(body) == spec
    assert GridSpec.model_validate(json.loads(spec.model_dump_json())) == spec


def test_yaml_exponent_floats_without_a_dot_are_numbers():
    spec = parse_grid(MINIMAL + "search: {lr: 2e-3, arch_lr: 1E-4}\n")
    assert (spec.search.lr, spec.search.arch_lr) == (2e-3, 1e-4)


def test_a_misspelt_key_is_an_error_with_a_suggestion_on_its_line():
    text = MINIMAL + "search:\n  epochs: 3\n  epoch: 4\n"
    assert error_of(text) == "grid.yaml line 6: search.epoch: unknown key (did you mean 'epochs'?)"


def test_a_bad_operator_in_a_list_names_its_index_line_and_the_allowed_values():
    text = MINIMAL + "space:\n  operators:\n    - S1\n    - S3\n"
    assert error_of(text) == "grid.yaml line 7: space.operators[1]: 'S3' not in {S1, S2}"


def test_a_wrong_type_says_what_was_expected():
    assert error_of(MINIMAL + "repeats: many\n") == (
        "grid.yaml line 4: repeats: expected an integer, got 'many'"
    )
    assert "line 4: search: expected a mapping, got null" in error_of(MINIMAL + "search:\n")
    booleans = error_of(MINIMAL + "space:\n  inputs: [true]\n")
    assert "line 5: space.inputs[0]: expected an integer, got true" in booleans


def test_a_yaml_syntax_error_names_its_line():
    message = error_of(MINIMAL + "space: {operators: [S1, S2}\n")
    assert message.startswith("grid.yaml line 4: YAML syntax error: ")


def test_a_grid_over_max_trials_is_refused_naming_the_counts():
    message = error_of(MINIMAL + "repeats: 600\n")
    assert message.startswith("grid.yaml line 1: max_trials: the grid makes 29,267 Ray trials")
    assert "search 28,800" in message and "more than max_trials 2,000" in message
    assert error_of(MINIMAL + "random: {enabled: false}\nmax_trials: 100\n").startswith(
        "grid.yaml line 5: max_trials: the grid makes 467 Ray trials "
        "(baselines 42, search 288, evaluation 288, random 0, controls 0, bohb 137, transfer 0;"
    )


def test_partial_k_that_does_not_divide_channels_points_at_partial_k():
    message = error_of(MINIMAL + "space:\n  channels: 30\n  partial_k: 4\n")
    assert message.startswith("grid.yaml line 6: space.partial_k: ")
    assert "does not divide channels=30" in message


def test_bohb_min_epochs_not_below_max_epochs_is_an_error_on_its_line():
    message = error_of(MINIMAL + "bohb:\n  max_epochs: 3\n  min_epochs: 3\n")
    assert message == "grid.yaml line 6: bohb.min_epochs: 3 must be below max_epochs 3"


def test_bohb_ranges_need_positive_low_below_high():
    reversed_range = error_of(MINIMAL + "bohb: {lr: [1e-2, 1e-5]}\n")
    assert "line 4: bohb.lr: [0.01, 1e-05] needs 0 < low < high" in reversed_range
    one_bound = error_of(MINIMAL + "bohb: {weight_decay: [1]}\n")
    assert "bohb.weight_decay: needs at least 2 values, got 1" in one_bound


def test_every_problem_is_reported_in_line_order():
    text = MINIMAL + "space:\n  operators: [S3]\n  cells: [1, 1]\nsearch: {lr: -1}\n"
    assert error_of(text).splitlines() == [
        "grid.yaml line 5: space.operators[0]: 'S3' not in {S1, S2}",
        "grid.yaml line 6: space.cells[1]: 1 is listed twice",
        "grid.yaml line 7: search.lr: should be greater than 0, got -1",
    ]


def test_a_missing_key_points_at_its_parent():
    assert error_of("name: x\nrepeats: 1\n") == "grid.yaml line 1: dataset: required key missing"
    assert error_of("name: x\nrepeats: 1\ndataset:\n  modalities: [rgb]\n") == (
        "grid.yaml line 3: dataset.store: required key missing"
    )


def test_a_key_given_twice_is_an_error():
    assert error_of(MINIMAL + "repeats: 1\nrepeats: 2\n") == (
        "grid.yaml line 5: repeats: given twice (first on line 4); YAML would keep only the last"
    )


def test_the_top_level_must_be_a_mapping():
    assert error_of("- a\n- b\n").startswith("grid.yaml line 1: a grid is a mapping of keys (name, dataset,")
    assert error_of("").endswith("this one is empty")


def test_combos_name_known_distinct_modalities():
    assert "line 4: baselines.combos[1][0]: 'depth' not in {rgb, flow, pose}" in error_of(
        MINIMAL + "baselines: {combos: [[rgb], [depth]]}\n"
    )
    assert "baselines.combos[1]: ['flow', 'rgb'] is listed twice" in error_of(
        MINIMAL + "baselines: {combos: [[rgb, flow], [flow, rgb]]}\n"
    )
    assert "baselines.combos[3][0]: 'pose' not in dataset.modalities {rgb, flow}" in error_of(
        "name: x\ndataset: {store: s, modalities: [rgb, flow]}\n"
        "baselines: {combos: [[rgb], [flow], [rgb, flow], [pose]]}\n"
    )


@pytest.mark.parametrize("name", ["", "..", "a/b", "x" * 65, "-x"])
def test_the_name_must_be_a_safe_directory_name(name):
    assert "name: " in error_of(f"name: '{name}'\ndataset: {{store: s}}\n")


def test_resources_refuse_fractions_above_one():
    assert "resources.gpus_per_trial: 1.5: Ray takes fractions only below 1" in error_of(
        MINIMAL + "resources: {gpus_per_trial: 1.5}\n"
    )
    assert parse_grid(MINIMAL + "resources: {gpus_per_trial: 0.25}\n").resources.gpus_per_trial == 0.25


def test_a_json_body_gets_the_same_messages_without_lines():
    with pytest.raises(GridSpecError) as info:
        validate_grid({"name": "j", "dataset": {"store": "s"}, "search": {"epoch": 3}})
    assert str(info.value) == "<json>: search.epoch: unknown key (did you mean 'epochs'?)"


def test_the_error_survives_pickling_as_ray_ships_it():
    with pytest.raises(GridSpecError) as info:
        parse_grid(MINIMAL + "repeats: 0\n", "grid.yaml")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.problems[0].line == 4


def test_an_unreadable_file_is_a_grid_spec_error(tmp_path):
    with pytest.raises(GridSpecError, match="cannot read the grid"):
        load_grid(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("yaml_text", "says"), [
    ("search: {epochs: 1001}", "line 4: search.epochs: should be less than or equal to 1000, got 1001"),
    ("evaluation: {batch_size: 4097}", "line 4: evaluation.batch_size: should be less than or equal to 4096"),
    ("space: {channels: 4097}", "line 4: space.channels: should be less than or equal to 4096"),
    ("repeats: 1001", "line 4: repeats: should be less than or equal to 1000"),
    ("random: {repeats: 1001}", "line 4: random.repeats: should be less than or equal to 1000"),
    ("max_trials: 100001", "line 4: max_trials: should be less than or equal to 100000"),
    ("max_concurrent_trials: 100001", "line 4: max_concurrent_trials: should be less than or equal to 100000"),
    ("search: {lr: 11}", "line 4: search.lr: should be less than or equal to 10"),
    ("search: {weight_decay: 2}", "line 4: search.weight_decay: should be less than or equal to 1"),
    ("bohb: {iterations: 101}", "line 4: bohb.iterations: should be less than or equal to 100"),
    ("bohb: {max_epochs: 1001}", "line 4: bohb.max_epochs: should be less than or equal to 1000"),
    ("bohb: {batch_sizes: [8, 5000]}", "line 4: bohb.batch_sizes[1]: should be less than or equal to 4096"),
    ("bohb: {lr: [1e-3, 100]}", "line 4: bohb.lr[1]: should be less than or equal to 10"),
    ("resources: {gpus_per_trial: 17}", "line 4: resources.gpus_per_trial: should be less than or equal to 16"),
    ("resources: {cpus_per_trial: 257}", "line 4: resources.cpus_per_trial: should be less than or equal to 256"),
    ("resources: {max_failures: 101}", "line 4: resources.max_failures: should be less than or equal to 100"),
    ("resources: {max_failures: -1}", "line 4: resources.max_failures: should be greater than or equal to 0"),
    (f"seed: {2**32}", "line 4: seed: should be less than or equal to 4294967295, got 4294967296"),
    ("storage: " + "x" * 4097, "line 4: storage: string should have at most 4096 characters"),
])
def test_every_number_has_a_bound_named_on_its_line(yaml_text, says):
    assert says in error_of(MINIMAL + yaml_text + "\n")


def test_the_bounds_themselves_are_allowed():
    spec = parse_grid(MINIMAL + f"seed: {MAX_SEED}\nsearch: {{epochs: 1000, warmup_epochs: 1000, lr: 10}}\n"
                      "resources: {gpus_per_trial: 16, cpus_per_trial: 256, max_failures: 100}\n")
    assert spec.seed == 2**32 - 1 and spec.search.epochs == 1000 and spec.resources.gpus_per_trial == 16
    assert spec.resources.max_failures == 100 and parse_grid(MINIMAL).resources.max_failures == 2


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400"])
def test_non_finite_numbers_are_refused(value):
    assert "line 4: evaluation.lr: expected a finite number, got " in error_of(
        MINIMAL + f"evaluation: {{lr: {value}}}\n")
    assert "bohb.weight_decay[0]: expected a finite number" in error_of(
        MINIMAL + f"bohb: {{weight_decay: [{value}, 1e-2]}}\n")


def test_the_largest_grid_the_bounds_allow_is_counted_at_once():
    text = MINIMAL + ("repeats: 1000\nrandom: {repeats: 1000}\nbaselines: {repeats: 1000}\n"
                      "bohb: {iterations: 100, min_epochs: 1, max_epochs: 1000, eta: 2}\nmax_trials: 100000\n")
    start = time.process_time()
    message = error_of(text)
    assert time.process_time() - start < 1.0
    assert "max_trials: the grid makes 114,890 Ray trials" in message and "bohb 11,890, transfer 0;" in message


def test_synthetic_data_the_library_cannot_make_is_refused_at_validation():
    text = "name: x\ndataset:\n  store: s\n  synthetic: {classes: 48}\n"
    assert error_of(text).startswith("grid.yaml line 4: dataset.synthetic.classes: 48 objects, the moving place")
    beside = parse_grid("name: x\ndataset:\n  store: s\n  synthetic: {classes: 41, layout: beside}\n")
    assert beside.dataset.synthetic.classes == 41


def test_a_json_text_body_is_read_with_the_yaml_limits():
    assert parse_grid_json('{"name": "j", "dataset": {"store": "s"}}') == parse_grid("name: j\ndataset: {store: s}\n")
    with pytest.raises(GridSpecError) as info:
        parse_grid_json('{"name": "j", "dataset": {"store": "s", "store": "t"}}', "request body")
    assert str(info.value) == "request body: dataset.store: given twice in one object; JSON would keep only the last"
    assert info.value.unreadable
    with pytest.raises(GridSpecError, match=r"request body: search\.epoch: unknown key \(did you mean 'epochs'\?\)"):
        parse_grid_json('{"name": "j", "dataset": {"store": "s"}, "search": {"epoch": 3}}', "request body")


def test_a_grid_that_reads_but_does_not_validate_is_not_unreadable():
    with pytest.raises(GridSpecError) as info:
        parse_grid(MINIMAL + "repeats: 0\n")
    assert not info.value.unreadable
    with pytest.raises(GridSpecError) as info:
        parse_grid(MINIMAL + "repeats: *r\n")
    assert info.value.unreadable


def test_a_synthetic_reach_or_lag_store_takes_its_knob_and_refuses_it_elsewhere():
    spec = parse_grid("name: x\ndataset: {store: s, synthetic: {clips: 400, layout: reach, reach: 2}}\n")
    assert spec.dataset.synthetic.store_arguments() == {
        "n_train": 300, "n_test": 100, "n_classes": 4, "seed": 0, "layout": "reach", "reach": 2, "lag": None}
    message = error_of("name: x\ndataset: {store: s, synthetic: {layout: at, lag: 2}}\n")
    assert "dataset.synthetic.lag: lag=2 is the knob of layout 'lag', not of layout 'at'" in message


def test_the_search_method_fields_reach_the_search_config_and_thin_channels_warn():
    from adf_service.train import SearchConfig
    from trials.spec import grid_warnings

    spec = parse_grid("name: x\ndataset: {store: s}\nsearch: {snapshot_from: any, learned_margin: 5, edge_norm: false}\n"
                      "space: {channels: 16, partial_k: 4}\n")
    config = SearchConfig(**spec.search.model_dump(exclude={"enabled"}))
    assert (config.snapshot_from, config.learned_margin, config.edge_norm) == ("any", 5.0, False)
    assert "sends 4 channels through each mixed op, fewer than 16" in grid_warnings(spec)[0]
    wide = parse_grid("name: x\ndataset: {store: s}\nspace: {channels: 64, partial_k: 4}\n")
    assert grid_warnings(wide) == [] and wide.search.snapshot_from == "after_warmup"
    assert "search.snapshot_from" in error_of(MINIMAL + "search: {snapshot_from: first}\n")
