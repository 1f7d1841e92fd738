"""Per-setting statistics of a job's rows (issue 12 item 1): searched vs random vs controls."""

import pytest

from trials.config import Setting, TrialConfig
from trials.summary import setting_summaries

S2 = Setting("S2", "all", 2, 2)


def row(stage: str, top1: float | None, setting: Setting = S2, status: str = "succeeded", control: str | None = None,
        learned: bool | None = None):
    config = TrialConfig(stage=stage if stage != "evaluation" else "search", trial_key=f"{stage}-{top1}", repeat=0,
                         seed=1, store="s", modalities=None, setting=setting, control=control)
    return {"stage": stage, "status": status, "test_top1": top1, "config": config.to_json(), "learned": learned,
            **setting.to_dict()}


def test_each_setting_gets_its_groups_and_searched_vs_random():
    rows = [row("evaluation", v) for v in (90.0, 80.0, 70.0)] + [row("random", v) for v in (60.0, 50.0, 40.0)]
    rows += [row("controls", 25.0, control="all_skip"), row("search", None), row("baselines", 99.0)]
    rows += [row("random", None, status="failed")]  # a failed trial counts in no group
    [summary] = setting_summaries(rows)
    assert (summary["operators"], summary["discretization"], summary["n_inputs"], summary["n_cells"]) == ("S2", "all", 2, 2)
    assert set(summary["groups"]) == {"searched", "random", "all_skip"}
    searched = summary["groups"]["searched"]
    assert (searched["n"], searched["best"], searched["mean"], searched["std"]) == (3, 90.0, 80.0, 10.0)
    assert summary["groups"]["all_skip"]["n"] == 1 and summary["groups"]["all_skip"]["std"] is None
    versus = summary["searched_vs_random"]
    assert versus["mean_difference"] == 30.0 and versus["p_value"] == pytest.approx(0.05)  # 1 / C(6, 3)
    assert versus["ci_low"] <= 30.0 <= versus["ci_high"]


def test_a_setting_without_random_trials_has_no_comparison_and_settings_stay_apart():
    other = Setting("S1", "topk", 1, 1)
    rows = [row("evaluation", 70.0), row("evaluation", 75.0, setting=other), row("random", 20.0, setting=other)]
    summaries = setting_summaries(rows)
    assert [s["operators"] for s in summaries] == ["S1", "S2"]
    assert summaries[0]["searched_vs_random"]["searched_n"] == 1
    assert summaries[1]["searched_vs_random"] is None


def test_the_run_command_prints_a_row_per_setting():
    from rich.console import Console

    from trials.cli import summary_table

    rows = [row("evaluation", v) for v in (90.0, 80.0, 70.0)] + [row("random", v) for v in (60.0, 50.0, 40.0)]
    rows.append(row("controls", 25.0, control="all_skip"))
    console = Console(width=200, record=True)
    console.print(summary_table(setting_summaries(rows)))
    text = console.export_text()
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") > 5}
    assert "S2-all-I2-C2" in lines["searched"] and "80.0 ± 10.0" in lines["searched"] and "90.0" in lines["searched"]
    assert "+30.0 [" in lines["searched"] and "p = 0.05" in lines["searched"]
    assert "50.0 ± 10.0" in lines["random"] and "25.0" in lines["all_skip"]


def test_a_search_whose_supernet_did_not_learn_is_counted_apart_never_as_searched():
    rows = [row("evaluation", 95.0, learned=False), row("evaluation", 70.0, learned=True), row("random", 60.0)]
    [summary] = setting_summaries(rows)
    assert summary["n_unlearned"] == 1 and summary["groups"]["searched"]["n"] == 1
    assert summary["groups"]["searched"]["best"] == 70.0  # the 95 % of an unmoved α is not reported
    [alone] = setting_summaries([row("evaluation", 95.0, learned=False)])
    assert alone["groups"] == {} and alone["n_unlearned"] == 1 and alone["searched_vs_random"] is None
