"""The demo (issue 12 item 7): searched vs random vs a control vs late fusion on the reach layout,
with its statistics; on that layout the control and late fusion stay at chance."""

import json
import statistics

import pytest
from typer.testing import CliRunner

from adf_service.demo import DemoSettings, run_demo
from adf_service.features.synth import generate_synthetic_store
from adf_service.genotype import control_genotype
from adf_service.train import TrainConfig, baseline_run, drive, evaluation_run
from api.cli import app


def test_the_demo_reports_searched_random_control_and_baselines_with_their_statistics(tmp_path):
    settings = DemoSettings(n_train=96, n_test=32, search_epochs=2, warmup_epochs=1, eval_epochs=2,
                            baseline_epochs=2, n_searches=2, n_random=3, seed=1)
    report = run_demo(tmp_path, settings)
    assert report.layout == "reach3" and report.chance_top1 == 25.0
    assert len(report.random) == report.n_random == 3
    assert report.random_top1 == report.random_top1_mean == pytest.approx(statistics.fmean(report.random))
    assert report.random_top1_std == pytest.approx(statistics.stdev(report.random))
    assert report.n_searched + report.n_unlearned == 2 and len(report.searched) == report.n_searched
    if report.n_searched:
        assert report.searched_top1 == max(report.searched) and 0 < report.p_searched_gt_random <= 1
    else:  # 2 epochs on 96 clips rarely learn: no searched result is reported
        assert report.searched_top1 is None and report.p_searched_gt_random is None
    assert set(report.baselines) == {"R", "F", "P", "R+F", "R+P", "F+P", "R+F+P"}
    assert report.baselines["R+F+P"] == report.baseline_top1
    assert 0 <= report.all_skip_top1 <= 100


def test_on_the_demo_layout_all_skip_and_late_fusion_stay_within_10_points_of_chance(tmp_path):
    s = DemoSettings()
    store = generate_synthetic_store(tmp_path / "store", n_train=s.n_train, n_test=s.n_test, n_classes=s.n_classes,
                                     seed=s.seed, layout=s.layout, reach=s.reach)
    config = TrainConfig(epochs=s.eval_epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed)
    skip = drive(evaluation_run(control_genotype(s.space(), s.discretization, "all_skip"), store, s.channels,
                                config))
    late = drive(baseline_run(store, ("rgb", "flow", "pose"), config))
    chance = 100 / s.n_classes
    assert abs(skip.test_top1 - chance) <= 10, skip.test_top1
    assert abs(late.test_top1 - chance) <= 10, late.test_top1


@pytest.mark.slow
def test_demo_command_prints_json_where_the_searches_learn_and_beat_random_on_average(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n_unlearned"] == 0 and summary["n_searched"] == 5
    assert summary["searched_top1_mean"] >= summary["random_top1_mean"]
    assert summary["searched_top1_mean"] - summary["baseline_top1"] >= 15
    assert summary["search_seconds"] + summary["eval_seconds"] < 600
