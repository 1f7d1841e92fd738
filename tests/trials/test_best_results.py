"""The best-result rules: Table 4's best run (highest test top-1) and BOHB's best (lowest val loss)."""

import json

from trials.results import best_evaluation, bohb_best


def row(stage, trial_id, *, test_top1=50.0, val_loss=1.0, status="succeeded", config=None):
    return {"stage": stage, "trial_id": trial_id, "test_top1": test_top1, "val_loss": val_loss,
            "status": status, "config": config}


def bohb_config(**evaluation):
    trial = {"stage": "bohb", "trial_key": "bohb-x", "repeat": 0, "seed": 1, "store": "s", "modalities": None,
             "genotype": "{}", "min_epochs": 1,
             "evaluation": {"epochs": 9, "batch_size": 16, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                            "weight_decay": 3e-4, **evaluation}}
    return json.dumps(trial, sort_keys=True)


def test_the_best_evaluation_has_the_highest_test_top1_ties_to_the_lower_val_loss():
    rows = [row("evaluation", "a", test_top1=60, val_loss=0.9),
            row("evaluation", "b", test_top1=60, val_loss=0.7),
            row("evaluation", "c", test_top1=99, status="failed"), row("search", "d", test_top1=99),
            row("random", "e", test_top1=99)]
    assert best_evaluation(rows)["trial_id"] == "b"
    assert best_evaluation([row("search", "d")]) is None


def test_by_val_the_best_evaluation_has_the_lowest_val_loss_and_an_unlearned_search_is_never_best():
    rows = [row("evaluation", "a", test_top1=90, val_loss=0.9),
            row("evaluation", "b", test_top1=60, val_loss=0.5),
            dict(row("evaluation", "u", test_top1=99, val_loss=0.1), learned=False)]
    assert best_evaluation(rows, by="val")["trial_id"] == "b"
    assert best_evaluation(rows, by="test")["trial_id"] == "a"  # the thesis' choice, on the test set


def test_the_grid_selects_bohbs_base_by_val_unless_told_test():
    from trials.spec import parse_grid

    assert parse_grid("name: x\ndataset: {store: s}\n").bohb.select == "val"
    assert parse_grid("name: x\ndataset: {store: s}\nbohb: {select: test}\n").bohb.select == "test"


def test_bohbs_best_has_the_lowest_val_loss_and_reports_its_sampled_training():
    rows = [row("bohb", "a", val_loss=0.8, test_top1=70, config=bohb_config(lr=0.01)),
            row("bohb", "b", val_loss=0.5, test_top1=40, config=bohb_config(lr=0.002, batch_size=32)),
            row("bohb", "c", val_loss=0.1, status="failed", config=bohb_config()),
            row("evaluation", "d", val_loss=0.01)]
    assert bohb_best(rows) == {
        "config": {"batch_size": 32, "lr": 0.002, "optimizer": "sgd", "weight_decay": 3e-4, "epochs": 9},
        "trial_id": "b", "val_loss": 0.5, "test_top1": 40,
    }
    assert bohb_best(rows[2:]) is None
