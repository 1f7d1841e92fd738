"""The command line: space, genotype show, synth, search/evaluate/baseline, demo."""

import json
import random

from typer.testing import CliRunner

from adf_service.genotype import random_genotype
from adf_service.space import SearchSpace
from api.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_space_json_has_exact_counts_edges_and_supernet_size():
    result = invoke("space", "--operators", "S1", "--channels", 512, "--inputs", 3, "--cells", 4, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["operators"]["conv_2plus1d_3x3x3"] == 7_077_888
    assert data["operators"]["sep_conv_3x3x3"] == 551_936
    assert data["edges_per_cell"] == 18
    assert data["supernet_params"] > 0 and data["arch_params"] == 4 * 18 * 7 + 4 * 18


def test_space_rejects_k_not_dividing_channels():
    result = invoke("space", "--channels", 30, "--partial-k", 4)
    assert result.exit_code == 2
    assert "does not divide channels=30" in result.output


def test_genotype_show_prints_every_cell_and_writes_a_dot_file(tmp_path):
    g = random_genotype(SearchSpace("S2", 2, 2, 8, 4), "topk", random.Random(1))
    g.save(tmp_path / "g.json")
    result = invoke("genotype", "show", tmp_path / "g.json", "--dot", tmp_path / "g.dot")
    assert result.exit_code == 0, result.output
    assert "cell 0:" in result.stdout and "cell 1:" in result.stdout
    assert result.stdout.count("→") == 16
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_genotype_show_names_the_bad_operator_and_file(tmp_path):
    data = random_genotype(SearchSpace("S2", 1, 1, 8, 4), "all", random.Random(1)).to_dict()
    data["cells"][0][0][0][1] = "conv_9x9x9"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    result = invoke("genotype", "show", tmp_path / "bad.json")
    assert result.exit_code == 2
    assert "bad.json" in result.output and "conv_9x9x9" in result.output


def test_synth_search_evaluate_baseline_from_the_command_line(tmp_path):
    store = tmp_path / "store"
    assert invoke("synth", "--out", store, "--clips", 120, "--classes", 3, "--seed", 2).exit_code == 0
    run = tmp_path / "run"
    result = invoke("search", store, "--out", run, "--channels", 8, "--epochs", 2, "--warmup", 1,
                    "--batch-size", 16, "--discretization", "topk")
    assert result.exit_code == 0, result.output
    assert (run / "genotype.json").exists() and (run / "search.ckpt").exists()
    assert len(json.loads((run / "history.json").read_text())) == 2
    result = invoke("evaluate", store, run / "genotype.json", "--out", tmp_path / "eval",
                    "--channels", 8, "--epochs", 1, "--batch-size", 16)
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads((tmp_path / "eval" / "result.json").read_text())["test_top1"] <= 100
    result = invoke("baseline", store, "--modalities", "rgb,flow", "--epochs", 1)
    assert result.exit_code == 0 and "test top-1" in result.stdout


def test_search_on_a_missing_store_is_a_clear_error(tmp_path):
    result = invoke("search", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "nowhere" in result.output


def test_search_with_an_unknown_modality_names_it(tmp_path):
    invoke("synth", "--out", tmp_path / "store", "--clips", 40, "--seed", 2)
    result = invoke("search", tmp_path / "store", "--out", tmp_path / "run", "--modalities", "rgb,depth",
                    "--channels", 8, "--epochs", 1)
    assert result.exit_code == 2
    assert "depth" in result.output
