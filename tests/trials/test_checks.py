"""Checks before launch (issue 15 item 6): a grid that validates but cannot run is refused with the
line of the key to change, saying what the store or the cluster has and what the grid asks.

Each check gets a grid that fails it, on a real store (hand-written where the writer refuses what
the check is about: tests/adf_service/features/conftest.py), and the grid that passes them all.
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from tests.adf_service.features.conftest import SHAPES, raw_manifest, write_raw_store
from trials.bohb import bohb_tuner_parts
from trials.checks import describe_nodes, key_line, launch_problems, resource_problems
from trials.spec import parse_grid_with_lines

GRID = """\
name: checks
dataset:
  store: {store}
  modalities: {modalities}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 2, warmup_epochs: 1, batch_size: {search_batch}}}
evaluation: {{epochs: 2, batch_size: {eval_batch}}}
baselines: {{combos: {combos}, repeats: 1}}
random: {{enabled: false}}
bohb:
  min_epochs: {min_epochs}
  max_epochs: {max_epochs}
  eta: 3
  batch_sizes: [16]
  samples: 3
resources:
  gpus_per_trial: {gpus}
  cpus_per_trial: {cpus}
"""
LINE = {"store": 3, "modalities": 4, "search": 7, "evaluation": 8, "baselines": 9, "max_epochs": 13,
        "gpus": 18, "cpus": 19}
CLUSTER = [{"CPU": 2.0, "GPU": 1.0}]  # one node: 2 CPUs, 1 GPU

runner = CliRunner()


def grid(store, **values):
    """(spec, lines) of GRID with ``values`` in place of its defaults."""
    fields = {"store": store, "modalities": "null", "search_batch": 16, "eval_batch": 16,
              "combos": "[[rgb], [flow]]", "min_epochs": 1, "max_epochs": 3, "gpus": 1, "cpus": 1, **values}
    return parse_grid_with_lines(GRID.format(**fields), "grid.yaml")


def problems_of(store, nodes=None, **values) -> list[tuple[str, str, int]]:
    spec, lines = grid(store, **values)
    return [(p.path, p.message, p.line) for p in launch_problems(spec, lines=lines, nodes=nodes)]


def raw_store(path: Path, splits=None, **manifest) -> Path:
    """A store with ``manifest`` changes (modalities, layers, shapes, classes) and clips per split."""
    splits = splits or {"train": 8, "test": 4}
    fields = raw_manifest(splits=splits, **manifest)
    views = {split: fields["n_train_views"] if split == "train" else 1 for split in splits}
    rows = [(f"{split}-{i}", i % len(fields["classes"]), split, view)
            for split, n in splits.items() for i in range(n) for view in range(views[split])]
    write_raw_store(path, fields, rows)
    return path


def test_a_grid_its_store_and_cluster_can_run_has_no_problem(store):
    assert problems_of(store.path, nodes=CLUSTER) == []


def test_a_missing_store_is_named_at_its_line(tmp_path):
    [(path, message, line)] = problems_of(tmp_path / "nowhere")
    assert (path, line) == ("dataset.store", LINE["store"])
    assert f"no feature store at {tmp_path / 'nowhere'}" in message and "dataset.synthetic" in message


def test_a_store_generated_from_synthetic_has_every_modality_and_no_other(tmp_path):
    text = GRID.format(store=tmp_path / "gen", modalities="[rgb, depth]", search_batch=16, eval_batch=16,
                       combos="[[rgb]]", min_epochs=1, max_epochs=3, gpus=1, cpus=1)
    text = text.replace("  modalities:", "  synthetic: {clips: 64}\n  modalities:")
    spec, lines = parse_grid_with_lines(text)
    [problem] = launch_problems(spec, lines=lines)
    assert (problem.path, problem.line) == ("dataset.modalities[1]", LINE["modalities"] + 1)
    assert "'depth' not in the synthetic store" in problem.message and "rgb, flow, pose" in problem.message
    assert not (tmp_path / "gen").exists()  # checking generates nothing


def test_a_modality_the_store_lacks_names_its_item_and_what_the_store_has(tmp_path):
    store = raw_store(tmp_path / "rf", modalities=["rgb", "flow"],
                      shapes={m: SHAPES[m] for m in ("rgb", "flow")})
    [(path, message, line)] = problems_of(store, modalities="[rgb, pose]", combos="[[rgb]]")
    assert (path, line) == ("dataset.modalities[1]", LINE["modalities"])
    assert message == f"'pose' not in the store at {store} (it has rgb, flow)"
    # with every modality of the store fused, a baseline's combo is what asks for the missing one
    [(path, message, line)] = problems_of(store, combos="[[rgb], [rgb, pose]]")
    assert (path, line) == ("baselines.combos[1][1]", LINE["baselines"]) and "'pose' not in" in message


def test_a_layer_a_stage_reads_must_be_in_the_store(tmp_path):
    store = raw_store(tmp_path / "l3", layers=["layer3"],
                      shapes={m: {"layer3": s["layer3"]} for m, s in SHAPES.items()})
    [(path, message, line)] = problems_of(store)
    assert (path, line) == ("dataset.store", LINE["store"])
    assert "has layers layer3; baselines read layer4 features" in message


def test_modalities_whose_fusion_features_differ_in_t_h_w_cannot_be_fused(tmp_path):
    shapes = {**SHAPES, "pose": {"layer3": [1, 4, 3, 3], "layer4": [2, 1, 2, 2]}}
    [(path, message, line)] = problems_of(raw_store(tmp_path / "thw", shapes=shapes))
    assert (path, line) == ("dataset.store", LINE["store"])
    assert "layer3 T, H, W differ between modalities" in message and "pose [4, 3, 3]" in message


def test_a_store_of_one_class_is_refused(tmp_path):
    [(path, message, _)] = problems_of(raw_store(tmp_path / "one", classes=["only"]))
    assert path == "dataset.store" and "has 1 class (only): classifying needs at least 2" in message


def test_a_store_without_test_clips_is_refused(tmp_path):
    [(path, message, _)] = problems_of(raw_store(tmp_path / "no-test", splits={"train": 8}))
    assert path == "dataset.store" and "no test clips (its splits: train 8)" in message


def test_too_few_train_clips_for_the_validation_split_are_refused(tmp_path):
    [(path, message, _)] = problems_of(raw_store(tmp_path / "four", splits={"train": 4, "test": 2}))
    assert path == "dataset.store"
    assert "has 4 train clips" in message and "90%/10%" in message and "at least 5" in message
    assert problems_of(raw_store(tmp_path / "five", splits={"train": 5, "test": 2})) == []


def test_one_by_one_by_one_features_refuse_batch_sizes_that_leave_a_clip_alone(tmp_path):
    # 8 train clips: an evaluation trains on 7 (90 %), a search on halves of 4 and 4
    point = {m: {"layer3": [s["layer3"][0], 1, 1, 1], "layer4": s["layer4"]} for m, s in SHAPES.items()}
    store = raw_store(tmp_path / "point", shapes=point)
    found = problems_of(store, search_batch=3, eval_batch=6)
    assert [(path, line) for path, _, line in found] == [("search.batch_size", LINE["search"]),
                                                         ("evaluation.batch_size", LINE["evaluation"])]
    assert "1×1×1 (T×H×W)" in found[1][1]
    assert "7 training clips in batches of 6 leave one alone" in found[1][1]
    assert problems_of(store, search_batch=4, eval_batch=7) == []
    # features of 2 values per channel train in any batch
    assert problems_of(raw_store(tmp_path / "wide", shapes=SHAPES), search_batch=3, eval_batch=6) == []


def test_bohb_budgets_without_a_full_bracket_name_max_epochs(tmp_path, store):
    [(path, message, line)] = problems_of(store.path, min_epochs=2, max_epochs=5)
    assert (path, line) == ("bohb.max_epochs", LINE["max_epochs"])
    assert "no full bracket" in message and "at least eta × min_epochs = 6" in message


@pytest.mark.parametrize(("min_epochs", "max_epochs"), [(1, 2), (2, 5), (1, 3), (2, 6), (2, 70)])
def test_the_bracket_rule_is_ray_hyperbands(store, min_epochs, max_epochs):
    """A full bracket is HyperBand's bracket s = 1: Ray skips a bracket whose first budget rounds to 0."""
    spec, _ = grid(store.path, min_epochs=min_epochs, max_epochs=max_epochs)
    _, scheduler = bohb_tuner_parts(spec, seed=0)
    flagged = any(p.path == "bohb.max_epochs" for p in launch_problems(spec))
    assert flagged == (scheduler._get_r0(1) == 0)


def test_a_spec_changed_after_validation_is_held_to_max_trials(store):
    spec, lines = grid(store.path)
    bigger = spec.model_copy(update={"repeats": 3000})  # model_copy runs no validator
    [problem] = launch_problems(bigger, lines=lines)
    assert problem.path == "max_trials" and "3,005 Ray trials, more than max_trials 2,000" in problem.message
    assert problem.line == 1  # a key the file leaves out: the document's line


def test_a_trial_that_fits_no_node_names_the_resource_and_what_the_nodes_have(store):
    [(path, message, line)] = problems_of(store.path, nodes=CLUSTER, gpus=4)
    assert (path, line) == ("resources.gpus_per_trial", LINE["gpus"])
    assert message == "a trial asks for 1 CPU and 4 GPU on one node, and no alive node has 4 GPU: " \
                      "the cluster has 1 node of 2 CPU / 1 GPU"
    [(path, _, line)] = problems_of(store.path, nodes=CLUSTER, cpus=8)
    assert (path, line) == ("resources.cpus_per_trial", LINE["cpus"])
    # each fits a node, but not the same one
    apart = [{"CPU": 8.0, "GPU": 0.0}, {"CPU": 1.0, "GPU": 1.0}]
    [(path, message, _)] = problems_of(store.path, nodes=apart, cpus=2)
    assert path == "resources.gpus_per_trial" and "no alive node has both at once" in message


def test_a_gpu_trial_on_a_cluster_without_gpus_waits_or_falls_back_to_cpus(store):
    spec, lines = grid(store.path, gpus=1, cpus=4)
    cpu_only = [{"CPU": 2.0}]
    assert resource_problems(spec.resources, cpu_only) == []  # an autoscaler may add a GPU node
    fallback = spec.resources.model_copy(update={"allow_cpu_fallback": True})
    [problem] = resource_problems(fallback, cpu_only, lines=lines)
    assert (problem.path, problem.line) == ("resources.cpus_per_trial", LINE["cpus"])
    assert "(on CPUs: no node has a GPU" in problem.message and "no alive node has 4 CPU" in problem.message


def test_a_key_the_file_leaves_out_takes_the_line_of_its_section():
    lines = {(): 1, ("resources",): 7, ("resources", "cpus_per_trial"): 8, ("bohb", "batch_sizes", 1): 12}
    assert key_line(lines, "resources.gpus_per_trial") == 7
    assert key_line(lines, "bohb.batch_sizes[1]") == 12
    assert key_line(None, "resources") is None


def test_nodes_are_described_by_their_shapes():
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0}, {"CPU": 8.0, "GPU": 1.0, "memory": 1e9}]
    assert describe_nodes(nodes) == "2 nodes of 8 CPU / 1 GPU, 1 node of 4 CPU / 0 GPU"
    assert describe_nodes([]) == "no alive node"


def test_validate_and_run_refuse_a_grid_that_cannot_run_with_its_line_before_ray_starts(tmp_path, store):
    text = GRID.format(store=store.path, modalities="null", search_batch=16, eval_batch=16, combos="[[rgb]]",
                       min_epochs=2, max_epochs=5, gpus=0, cpus=1)
    (tmp_path / "g.yaml").write_text(text)
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(tmp_path / "g.yaml")])
        assert result.exit_code == 2, result.output
        line = LINE["max_epochs"]
        assert f"g.yaml line {line}: bohb.max_epochs: budgets from min_epochs 2" in result.output
