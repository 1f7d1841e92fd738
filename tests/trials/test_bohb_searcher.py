"""ResumableTuneBOHB: a trial the restored searcher never saw still reports to BOHB."""

import ConfigSpace as CS
import pytest

from trials.bohb import ResumableTuneBOHB

SAMPLED = {"batch_size": 32, "lr": 0.0054, "optimizer": "sgd", "weight_decay": 2e-5}


def searcher() -> ResumableTuneBOHB:
    space = CS.ConfigurationSpace(seed=1)
    space.add([CS.CategoricalHyperparameter("batch_size", [16, 32]),
               CS.UniformFloatHyperparameter("lr", 1e-4, 1e-1, log=True),
               CS.CategoricalHyperparameter("optimizer", ["sgd", "adamw"]),
               CS.UniformFloatHyperparameter("weight_decay", 1e-6, 1e-2, log=True)])
    return ResumableTuneBOHB(space=space, metric="val_loss", mode="min", seed=1)


@pytest.mark.parametrize("config", [
    {f"config/{k}": v for k, v in SAMPLED.items()},  # what Tune hands a searcher: the flattened result
    {"config": SAMPLED},
], ids=["flattened", "nested"])
def test_an_unknown_trials_result_reaches_bohb_with_the_values_from_its_config(config):
    bohb = searcher()
    bohb.on_trial_result("609edc6f", {"val_loss": 0.75, "hyperband_info": {"budget": 3.0}, "epoch": 3} | config)
    assert bohb.trial_to_params["609edc6f"] == SAMPLED
    assert bohb.bohber.losses[3.0] == [0.75]
    bohb.on_trial_complete("609edc6f")
    bohb.on_trial_complete("never-seen")  # no KeyError either
    assert "609edc6f" not in bohb.trial_to_params
