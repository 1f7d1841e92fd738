"""The demo: on the synthetic data the searched fusion beats late fusion by a clear margin."""

import json

import pytest
from typer.testing import CliRunner

from adf_service.demo import DemoSettings, run_demo
from api.cli import app


def test_searched_fusion_beats_late_fusion_on_a_small_demo(tmp_path):
    settings = DemoSettings(n_train=360, n_test=120, search_epochs=4, warmup_epochs=1,
                            eval_epochs=6, baseline_epochs=6, seed=1)
    report = run_demo(tmp_path, settings)
    assert report.searched_top1 - report.baseline_top1 >= 15
    assert report.baselines["R+F+P"] == report.baseline_top1
    assert max(report.baselines.values()) < report.searched_top1
    assert (tmp_path / "genotype.json").exists()


@pytest.mark.slow
def test_demo_command_prints_json_with_a_15_point_margin(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["searched_top1"] - summary["baseline_top1"] >= 15
    assert summary["search_seconds"] + summary["eval_seconds"] < 600
