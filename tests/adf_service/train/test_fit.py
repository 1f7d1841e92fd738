"""From-scratch training: the evaluation of a genotype and the late-fusion baselines."""

import random

import pytest

from adf_service.genotype import random_genotype
from adf_service.train import CheckpointError, TrainConfig, baseline_run, drive, evaluation_run


@pytest.fixture
def train_config():
    return TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=5)


@pytest.fixture
def genotype(tiny_space):
    return random_genotype(tiny_space, "all", random.Random(0))


def test_evaluation_reports_test_top1_of_the_best_val_loss_epoch(tiny_store, genotype, train_config):
    result = drive(evaluation_run(genotype, tiny_store, 8, train_config))
    best = min(result.history, key=lambda r: r.val_loss)
    assert (result.best_epoch, result.test_top1) == (best.epoch, best.test_top1)
    assert len(result.history) == 3 and result.params > 0


def test_evaluation_uses_a_fresh_90_10_split_of_the_training_set(tiny_store, genotype, train_config):
    run = evaluation_run(genotype, tiny_store, 8, train_config)
    assert (len(run.train_clips), len(run.val_clips)) == (58, 6)  # round(0.9 · 64)
    assert not set(run.train_clips.indices) & set(run.val_clips.indices)


def test_same_seed_gives_same_accuracy(tiny_store, genotype, train_config):
    a = drive(evaluation_run(genotype, tiny_store, 8, train_config))
    b = drive(evaluation_run(genotype, tiny_store, 8, train_config))
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]
    assert a.test_top1 == b.test_top1


@pytest.mark.parametrize("modalities", [["rgb"], ["flow", "pose"], ["rgb", "flow", "pose"]])
def test_baseline_trains_on_layer4_of_any_modality_subset(tiny_store, train_config, modalities):
    run = baseline_run(tiny_store, modalities, train_config)
    assert run.train_clips.layer == "layer4" and list(run.train_clips.modalities) == modalities
    result = drive(run)
    channels = sum(tiny_store.manifest.shapes[m]["layer4"][0] for m in modalities)
    assert result.params == channels * 3 + 3


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_bohb_optimizers_train(tiny_store, optimizer):
    config = TrainConfig(epochs=1, batch_size=16, optimizer=optimizer, lr=1e-3, seed=1)
    assert drive(baseline_run(tiny_store, ["rgb"], config)).history[0].train_loss > 0


def test_training_checkpoint_for_another_model_is_refused(tiny_store, genotype, train_config, tmp_path):
    drive(baseline_run(tiny_store, ["rgb"], train_config), checkpoint=tmp_path / "t.ckpt", stop_after=1)
    with pytest.raises(CheckpointError, match="'model': 'baseline'"):
        drive(evaluation_run(genotype, tiny_store, 8, train_config), checkpoint=tmp_path / "t.ckpt")


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer 'rmsprop' not in"):
        TrainConfig(optimizer="rmsprop")
