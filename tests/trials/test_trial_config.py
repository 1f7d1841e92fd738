"""TrialConfig: one typed record per trial, a plain dict for Tune, the same JSON in every result row."""

import json
from pathlib import Path

import pytest

from trials.config import BOHB_HYPERPARAMETERS, STAGES, TRIAL_STAGES, Setting, TrialConfig
from trials.expand import baseline_trials, control_trials, random_trials, search_trials
from trials.results import trial_rows
from trials.spec import load_grid

EXAMPLES = Path(__file__).parents[2] / "examples"
COMMON = {"stage", "trial_key", "repeat", "seed", "store", "modalities"}


@pytest.fixture(scope="module")
def smoke():
    return load_grid(EXAMPLES / "grid-smoke.yaml")


def bohb_base(spec):
    from trials.bohb import bohb_trial  # imports Ray Tune

    best = search_trials(spec)[0]
    return bohb_trial(spec, TrialConfig.from_json(best.to_json()), '{"normal": []}')


def transfer_trial(spec):  # what trials.expand.transfer_trials makes from another job's evaluation row
    search = search_trials(spec)[0]
    return TrialConfig(stage="transfer", trial_key=f"transfer-{search.trial_key}-r0", setting=search.setting, repeat=0,
                       seed=1, store="other-store", modalities=("rgb",), channels=search.channels,
                       genotype='{"normal": []}', evaluation=search.evaluation,
                       source={"job": "src", "trial_key": search.trial_key, "store": "s", "test_top1": 50.0})


def with_controls(spec):
    return spec.model_copy(update={"controls": spec.controls.model_copy(update={"enabled": True})})


def test_every_stage_round_trips_through_its_dict_and_its_json(smoke):
    trials = [*baseline_trials(smoke), *search_trials(smoke), *random_trials(smoke),
              *control_trials(with_controls(smoke)), bohb_base(smoke), transfer_trial(smoke)]
    assert {t.stage for t in trials} == set(TRIAL_STAGES)
    for trial in trials:
        assert TrialConfig.from_dict(trial.to_dict()) == trial
        assert TrialConfig.from_json(trial.to_json()) == trial
        assert json.loads(trial.to_json()) == trial.to_dict()


def test_each_stages_dict_has_exactly_its_own_keys(smoke):
    setting_keys = COMMON | {"setting", "channels", "partial_k", "search", "evaluation"}
    assert set(search_trials(smoke)[0].to_dict()) == setting_keys
    assert set(random_trials(smoke)[0].to_dict()) == setting_keys
    assert set(control_trials(with_controls(smoke))[0].to_dict()) == setting_keys - {"search"} | {"control"}
    assert set(baseline_trials(smoke)[0].to_dict()) == COMMON | {"combo", "training"}
    bohb = bohb_base(smoke).to_dict()
    assert set(bohb) == COMMON | {"setting", "channels", "partial_k", "genotype", "evaluation", "min_epochs"}
    assert bohb["evaluation"]["epochs"] == smoke.bohb.max_epochs and bohb["modalities"] is None


def test_a_bohb_sample_keeps_the_base_and_trains_with_the_sampled_values(smoke):
    from trials.bohb import bohb_config_space, bohb_sample_trial

    assert set(bohb_config_space(smoke, 0).keys()) == set(BOHB_HYPERPARAMETERS)
    base = bohb_base(smoke)
    sampled = bohb_sample_trial(base, "5ab1c_00003", {"lr": 0.01, "optimizer": "adamw"})
    assert sampled.trial_key == "bohb-5ab1c_00003" and base.trial_key == "bohb"
    assert sampled.evaluation == {**base.evaluation, "lr": 0.01, "optimizer": "adamw"}
    assert sampled.genotype == base.genotype and sampled.seed == base.seed


def test_tune_holds_the_dict_under_trial_and_a_bohb_sample_has_none(smoke):
    trial = search_trials(smoke)[0]
    assert TrialConfig.of_tune({"trial": trial.to_dict()}) == trial
    assert TrialConfig.stage_in_tune({"trial": trial.to_dict()}) == "search"
    bohb_sample = {"batch_size": 16, "lr": 0.01, "optimizer": "sgd", "weight_decay": 1e-4}
    assert TrialConfig.of_tune(bohb_sample) is None and TrialConfig.stage_in_tune(bohb_sample) is None
    assert TrialConfig.of_tune(None) is None


def test_a_config_with_an_unknown_or_missing_key_or_stage_is_refused_by_name(smoke):
    data = search_trials(smoke)[0].to_dict()
    with pytest.raises(ValueError, match=r"unknown keys \['setings'\]"):
        TrialConfig.from_dict({**data, "setings": {}})
    with pytest.raises(ValueError, match="seed missing"):
        TrialConfig.from_dict({k: v for k, v in data.items() if k != "seed"})
    with pytest.raises(ValueError, match=r"setting: unknown keys \['n_cell'\]"):
        TrialConfig.from_dict({**data, "setting": {**data["setting"], "n_cell": 1}})
    with pytest.raises(ValueError, match="unknown stage 'evaluation'"):
        TrialConfig.from_dict({**data, "stage": "evaluation"})  # a table, not a trial


def test_trial_stages_are_the_result_tables_but_evaluation():
    assert TRIAL_STAGES == tuple(s for s in STAGES if s != "evaluation")
    from trials import results

    assert results.STAGES is STAGES


def test_a_search_trials_rows_carry_its_setting_and_its_config(smoke):
    trial = search_trials(smoke)[0]
    produced = {"search": {"val_loss": 1.0}, "evaluation": {"val_loss": 0.5, "fusion_params": 7}}
    final = {"done": True, "device": "cpu", "wall_seconds": 3.0, "rows": json.dumps(produced)}
    rows = trial_rows("job", "t1", trial, final, None, backbone_params=10)
    assert set(rows) == {"search", "evaluation"}
    for row in rows.values():
        setting = trial.setting
        assert (row["operators"], row["discretization"], row["n_inputs"], row["n_cells"]) == (
            setting.operators, setting.discretization, setting.n_inputs, setting.n_cells)
        assert row["config"] == json.dumps(trial.to_dict(), sort_keys=True) and row["status"] == "succeeded"
    assert rows["evaluation"]["total_params"] == 17 and rows["search"]["wall_seconds"] == 3.0


def test_a_baselines_failed_row_names_its_modalities_and_has_no_setting(smoke):
    trial = baseline_trials(smoke)[0]
    (row,) = trial_rows("job", "t2", trial, None, "boom", None).values()
    assert row["modalities"] == "+".join(trial.modalities) and row["operators"] is None
    assert (row["status"], row["error"]) == ("failed", "boom")


def test_a_setting_is_the_thesis_s_disc_i_c():
    setting = Setting("S2", "topk", 2, 3)
    assert setting.to_dict() == {"operators": "S2", "discretization": "topk", "n_inputs": 2, "n_cells": 3}
    assert Setting.from_dict(setting.to_dict()) == setting


def test_a_trial_tune_ended_without_its_final_result_or_an_error_says_where_it_stopped(smoke, caplog):
    from ray.tune import Result

    from trials.pipeline import _collect

    trial = search_trials(smoke)[0]
    stopped = {"trial": trial.to_dict(), "phase": "evaluation", "epoch": 3, "epochs": 8, "training_iteration": 5,
               "done": False, "trial_id": "t9"}
    results = [Result(metrics=stopped, checkpoint=None, error=None, path=f"/runs/job/{trial.trial_key}"),
               Result(metrics={}, checkpoint=None, error=None, path=f"/runs/job/{trial.trial_key}")]
    with caplog.at_level("WARNING", logger="trials.pipeline"):
        rows = _collect("job", results, [trial], None)
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert rows[0]["error"] == rows[1]["error"] == (
        "the trial ended without its final result and without an error: its last result was evaluation "
        "epoch 3/8; `adf-service rerun --failed` runs it again")
    assert "it reported no epoch" in rows[2]["error"] and rows[2]["trial_id"] == trial.trial_key
    assert f"/runs/job/{trial.trial_key}: Tune ended the trial without" in caplog.text


def test_a_trials_error_keeps_its_message_where_its_repr_is_empty():
    from ray.exceptions import ActorDiedError

    from trials.results import error_text

    assert error_text(ValueError("bad epoch")) == "ValueError('bad epoch')"
    assert error_text(ActorDiedError()) == "ActorDiedError: The actor died unexpectedly before finishing this task."
    assert error_text(KeyError()) == "KeyError()"  # no message to add
