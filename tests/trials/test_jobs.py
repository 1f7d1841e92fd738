"""Trial jobs without Ray: a search trial runs its search, then its evaluation, and resumes."""

import json

import pytest

from trials.jobs import SettingJob, TrainJob, make_trial_job


def search_trial(store, stage="search"):
    return {
        "stage": stage, "trial_key": f"{stage}-S2-topk-I1-C1-r0",
        "setting": {"operators": "S2", "discretization": "topk", "n_inputs": 1, "n_cells": 1},
        "repeat": 0, "seed": 11, "store": str(store.path), "modalities": None,
        "channels": 8, "partial_k": 4,
        "search": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.9,
                   "weight_decay": 3e-4, "arch_lr": 3e-3, "arch_weight_decay": 1e-3, "second_order": False},
        "evaluation": {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                       "weight_decay": 3e-4},
    }


def test_search_trial_runs_search_epochs_then_evaluation_epochs(store):
    job = make_trial_job(search_trial(store))
    assert isinstance(job, SettingJob)
    phases = []
    while not job.done:
        phases.append(job.step()["phase"])
    assert phases == ["search", "search", "evaluation", "evaluation"]
    rows = job.rows()
    assert set(rows) == {"search", "evaluation"}
    assert json.loads(rows["search"]["genotype"])["discretization"] == "topk"
    assert rows["evaluation"]["genotype"] == rows["search"]["genotype"]
    assert 0 <= rows["evaluation"]["test_top1"] <= 100


def test_search_trial_resumes_mid_evaluation_with_the_same_result(store):
    straight = make_trial_job(search_trial(store))
    while not straight.done:
        straight.step()
    first = make_trial_job(search_trial(store))
    for _ in range(3):  # 2 search epochs + 1 evaluation epoch
        first.step()
    second = make_trial_job(search_trial(store))
    second.load_state_dict(first.state_dict())
    while not second.done:
        second.step()
    a, b = straight.rows(), second.rows()
    for table in ("search", "evaluation"):
        for key in ("best_epoch", "val_loss", "genotype"):
            assert a[table][key] == b[table][key]
    assert a["evaluation"]["test_top1"] == b["evaluation"]["test_top1"]


def test_random_trial_evaluates_a_seeded_random_genotype(store):
    a, b = make_trial_job(search_trial(store, "random")), make_trial_job(search_trial(store, "random"))
    assert isinstance(a, TrainJob) and a.genotype == b.genotype
    assert a.genotype.discretization == "random-topk"
    while not a.done:
        a.step()
    assert set(a.rows()) == {"random"}


def test_baseline_trial_trains_the_late_fusion_of_its_modalities(store):
    trial = {"stage": "baselines", "trial_key": "baselines-R+F-r0", "modalities": ["rgb", "flow"],
             "repeat": 0, "seed": 3, "store": str(store.path),
             "training": {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                          "weight_decay": 3e-4}}
    job = make_trial_job(trial)
    job.step()
    assert job.done and job.rows()["baselines"]["fusion_params"] == (16 + 16) * 3 + 3


def test_unknown_stage_is_refused_by_name(store):
    with pytest.raises(ValueError, match="unknown stage 'bogus'"):
        make_trial_job({**search_trial(store), "stage": "bogus"})
