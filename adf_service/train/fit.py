"""Training from scratch: the evaluation of a genotype and the late-fusion baselines.

Thesis §5.2.2–5.2.3: a fresh random 90/10 split of the training set, 70 epochs of SGD
(momentum 0.9, L2 3e-4, cosine from 2e-3 to 0), a snapshot per epoch, and the test
top-1 of the best-val-loss epoch reported. :class:`TrainRun` is resumable like
:class:`~adf_service.train.search.SearchRun`; the optimiser is a setting so the BOHB
stage can tune it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adf_service.features.dataset import ClipSet
from adf_service.features.store import FeatureStore
from adf_service.fusion import BaselineNetwork, FusionNetwork, count_parameters
from adf_service.genotype import Genotype
from adf_service.train.checkpoint import CheckpointError
from adf_service.train.metrics import RunningScore, evaluate
from adf_service.train.runtime import (
    EpochRecord,
    Runtime,
    TrainingDiverged,
    derive_seed,
    seed_everything,
    set_cosine_lr,
)

__all__ = [
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "TrainRun",
    "baseline_run",
    "count_flops",
    "evaluation_run",
]

OPTIMIZERS = ("sgd", "adam", "adamw")  # the BOHB stage's optimizer axis (docs/design.md §5)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a from-scratch training; defaults are the thesis' (§5.2.2–5.2.3)."""

    epochs: int = 70  # §5.2.2: 70 epochs from scratch
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 2e-3  # cosine-annealed to 0
    momentum: float = 0.9  # SGD only
    weight_decay: float = 3e-4  # L2, §5.2.3
    val_fraction: float = 0.1  # §5.2.2: resplit 90/10
    grad_clip: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} not in {set(OPTIMIZERS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size} must be ≥ 1")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction} must be in (0, 1)")


@dataclass
class TrainResult:
    """The best-val-loss epoch of a training and its test top-1 (%)."""

    best_epoch: int
    best_val_loss: float
    val_top1: float
    test_top1: float
    params: int
    history: list[EpochRecord]
    flops: int | None = None  # of one clip's forward pass (count_flops); None: not counted


def count_flops(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (a batch of one clip), as
    ``torch.utils.flop_counter`` counts them: a multiply-add is 2 FLOPs; convolutions and matmuls only."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(list(inputs))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, config.lr, weight_decay=config.weight_decay)


class TrainRun:
    """A resumable from-scratch training of ``model`` with per-epoch val and test scores."""

    kind = "train"

    def __init__(
        self,
        model: nn.Module,
        train_clips: ClipSet,
        test_clips: ClipSet,
        config: TrainConfig = TrainConfig(),
        runtime: Runtime = Runtime(),
        meta: dict[str, Any] | None = None,
        flops: int | None = None,
    ):
        self.config, self.runtime = config, runtime
        self.meta = meta or {}
        self.flops = flops
        self.train_clips, self.val_clips = train_clips.split_fraction(
            1.0 - config.val_fraction, derive_seed(config.seed, "eval-split")
        )
        self.test_clips = test_clips
        self.model = runtime.prepare_model(model)
        self.optimizer = _make_optimizer(self.model.parameters(), config)
        self.params = count_parameters(model)
        self.epoch = 0
        self.history: list[EpochRecord] = []
        self.best_model: dict[str, torch.Tensor] | None = None  # the weights of the best-val-loss epoch, on CPU

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def step_epoch(self) -> EpochRecord:
        cfg, started = self.config, time.perf_counter()
        device = self.runtime.torch_device
        self.model.train()
        score = RunningScore(device)
        lr = set_cosine_lr(self.optimizer, cfg.lr, self.epoch, cfg.epochs)
        for features, labels in self.train_clips.batches(
            cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=self.epoch
        ):
            features, labels = self.runtime.prepare_inputs(features), labels.to(device)
            self.optimizer.zero_grad(set_to_none=True)
            with self.runtime.autocast():
                logits = self.model(features)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            score.add(logits, labels, loss)
        self.epoch += 1
        train_loss = score.mean_loss()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(self.epoch, "the training loss")
        val_loss, val_top1 = evaluate(self.model, self.val_clips, self.runtime, cfg.batch_size)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(self.epoch, "the validation loss")
        _, test_top1 = evaluate(self.model, self.test_clips, self.runtime, cfg.batch_size)
        record = EpochRecord(
            epoch=self.epoch,
            epochs=cfg.epochs,
            train_loss=train_loss,
            train_top1=score.top1(),
            val_loss=val_loss,
            val_top1=val_top1,
            lr=lr,
            seconds=time.perf_counter() - started,
            test_top1=test_top1,
        )
        if all(val_loss < r.val_loss for r in self.history):  # the weights the reported test top-1 is of
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.history.append(record)
        return record

    def result(self) -> TrainResult:
        if not self.history:
            raise RuntimeError("the training has not run an epoch yet")
        best = min(self.history, key=lambda r: r.val_loss)
        return TrainResult(
            best_epoch=best.epoch,
            best_val_loss=best.val_loss,
            val_top1=best.val_top1,
            test_top1=best.test_top1,
            params=self.params,
            history=list(self.history),
            flops=self.flops,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "config": asdict(self.config),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": [r.to_dict() for r in self.history],
            "torch_rng": torch.get_rng_state(),
            "best_model": self.best_model,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("meta") != self.meta:
            raise CheckpointError(
                f"checkpoint is for {state.get('meta')}, this training is for {self.meta}"
            )
        if state.get("config") != asdict(self.config):
            raise CheckpointError(
                f"checkpoint has settings {state.get('config')}, this training has "
                f"{asdict(self.config)}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.best_model = state.get("best_model")  # None in a checkpoint written before it was kept
        torch.set_rng_state(state["torch_rng"])


def evaluation_run(
    genotype: Genotype,
    store: FeatureStore,
    channels: int,
    config: TrainConfig = TrainConfig(),
    runtime: Runtime = Runtime(),
    modalities: Sequence[str] | None = None,
) -> TrainRun:
    """Train the fusion network of ``genotype`` from scratch on the store's layer3 features."""
    train = ClipSet.of(store, "train", "layer3", modalities)
    test = ClipSet.of(store, "test", "layer3", modalities)
    train.spatial_shape()
    seed_everything(config.seed)
    model = FusionNetwork(genotype, train.channels(), store.n_classes, channels)
    flops = count_flops(model, [torch.zeros(1, c, *train.spatial_shape()) for c in train.channels()])
    # The cells, not the provenance: a trial resumed on another node (other device, versions) is the same training.
    meta = {"model": "fusion", "genotype": genotype.with_provenance(None).to_dict(), "channels": channels,
            "in_channels": list(train.channels()), "n_classes": store.n_classes, "modalities": list(train.modalities)}
    return TrainRun(model, train, test, config, runtime, meta, flops)


def baseline_run(
    store: FeatureStore,
    modalities: Sequence[str],
    config: TrainConfig = TrainConfig(),
    runtime: Runtime = Runtime(),
) -> TrainRun:
    """The late-fusion baseline of thesis §5.2.3 on the store's layer4 features."""
    train = ClipSet.of(store, "train", "layer4", modalities)
    test = ClipSet.of(store, "test", "layer4", modalities)
    seed_everything(config.seed)
    model = BaselineNetwork(train.channels(), store.n_classes)
    flops = count_flops(model, [torch.zeros(1, *store.layer_shape(m, "layer4")) for m in train.modalities])
    meta = {"model": "baseline", "modalities": list(train.modalities)}
    return TrainRun(model, train, test, config, runtime, meta, flops)
