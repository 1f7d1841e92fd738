"""The PC-DARTS search loop (docs/design.md §5, thesis §5.2.2), one epoch per call.

:class:`SearchRun` holds a supernet, its two optimisers and the search history; each
:meth:`SearchRun.step_epoch` runs one epoch and returns an :class:`EpochRecord`, and
``state_dict``/``load_state_dict`` make it resumable, so a Ray Tune trainable can wrap it
(setup → step → save/restore) without changes.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from adf_service.features.dataset import ClipSet
from adf_service.genotype import Genotype, discretize
from adf_service.space import DISCRETIZATIONS, SearchSpace, node_edge_slices
from adf_service.supernet import SearchNetwork
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
from adf_service.train.step import SearchStep

__all__ = ["SNAPSHOT_FROM", "SearchConfig", "SearchResult", "SearchRun"]

SNAPSHOT_FROM = ("after_warmup", "any")  # epochs the best-val snapshot may come from (issue 12)


@dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of one search; defaults are the thesis' (§5.2.2) but ``snapshot_from``."""

    epochs: int = 50  # §5.2.2: PC-DARTS for 50 epochs
    batch_size: int = 64  # §5.2.2
    lr: float = 2e-3  # w: SGD, §5.2.2
    momentum: float = 0.9  # §5.2.2
    weight_decay: float = 3e-4  # as in PC-DARTS / §5.2.3
    arch_lr: float = 3e-4  # α/β: Adam, §5.2.2
    arch_beta1: float = 0.5  # PC-DARTS' Adam betas (0.5, 0.999)
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3  # PC-DARTS
    warmup_epochs: int = 5  # §5.2.2: α frozen for the first 5 epochs
    arch_fraction: float = 0.5  # §5.2.2: training set split 50/50 into w / α halves
    second_order: bool = False  # DARTS' unrolled step; first-order by default
    grad_clip: float = 5.0  # DARTS / PC-DARTS clip w's gradient norm at 5
    discretization: str = "all"  # all | topk (thesis §4.2.3), for the per-epoch genotype
    # after_warmup: the best-val snapshot comes from an epoch after the α/β warm-up, since a
    # warm-up snapshot is the initial 1e-3·randn α, a random genotype (issue 12); any: every
    # epoch, as docs/design.md §5 reads §5.2.2. With warmup_epochs == epochs: the last epoch.
    snapshot_from: str = "after_warmup"
    # The supernet learned when its best val top-1 reached chance (100 / classes) + this many
    # points; a search that did not is marked unlearned, its genotype no better than random (issue 12).
    learned_margin: float = 10.0
    # PC-DARTS' edge normalisation: node j = Σ_i softmax(β_j)_i·edge_ij; off: every edge
    # weighs 1 and β stays 0 (uniform in discretize), so K = 1 without it is DARTS (issue 12).
    edge_norm: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.discretization not in DISCRETIZATIONS:
            raise ValueError(
                f"discretization {self.discretization!r} not in {set(DISCRETIZATIONS)}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size} must be ≥ 1")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} not in 0..epochs={self.epochs}")
        if self.snapshot_from not in SNAPSHOT_FROM:
            raise ValueError(f"snapshot_from {self.snapshot_from!r} not in {set(SNAPSHOT_FROM)}")
        if not -100 <= self.learned_margin < 100:
            raise ValueError(f"learned_margin={self.learned_margin!r} (top-1 points) not in [-100, 100)")


@dataclass
class SearchResult:
    """The best-val-loss snapshot of a search, its genotype, and whether the supernet learned.

    A search whose supernet never rose clearly above chance (``learned`` False: "unlearned")
    has a genotype no better than a random one and must not be reported as a searched result.
    """

    best_epoch: int
    best_val_loss: float
    genotype: Genotype
    op_weights: list[torch.Tensor]  # α per cell at the best epoch
    edge_weights: list[torch.Tensor]  # β per cell at the best epoch (zeros with edge_norm off)
    history: list[EpochRecord]
    chance_top1: float  # 100 / classes, in %
    max_val_top1: float  # the best val top-1 (%) over all epochs, warm-up included
    learned: bool  # max_val_top1 ≥ chance_top1 + SearchConfig.learned_margin; else "unlearned"

    def genotype_for(self, space: SearchSpace, method: str) -> Genotype:
        """Discretize the best snapshot with another method (all | topk)."""
        return discretize(self.op_weights, self.edge_weights, space, method)


def _entropy(probs: torch.Tensor) -> float:
    return float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())


class SearchRun:
    """A resumable PC-DARTS search over one :class:`SearchSpace` setting."""

    kind = "search"

    def __init__(
        self,
        space: SearchSpace,
        clips: ClipSet,
        config: SearchConfig = SearchConfig(),
        runtime: Runtime = Runtime(),
    ):
        self.space, self.config, self.runtime = space, config, runtime
        seed_everything(config.seed)
        self.w_clips, self.arch_clips = clips.split_fraction(
            1.0 - config.arch_fraction, derive_seed(config.seed, "search-split")
        )
        clips.spatial_shape()  # the supernet concatenates modalities: T, H, W must agree
        self.model = runtime.prepare_model(
            SearchNetwork(space, clips.channels(), clips.store.n_classes, edge_norm=config.edge_norm)
        )
        self.n_classes = clips.store.n_classes
        self.stepper = SearchStep(self.model, config, runtime)
        self.w_optimizer = self.stepper.w_optimizer
        self.arch_optimizer = self.stepper.arch_optimizer
        self.epoch = 0
        self.history: list[EpochRecord] = []
        self.snapshots: list[dict[str, list[torch.Tensor]]] = []  # α, β after every epoch
        self.best: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def may_snapshot(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` may give the best snapshot (:attr:`SearchConfig.snapshot_from`).

        after_warmup: epochs > warmup_epochs, in which α/β moved; when the warm-up is the whole
        search, only the last epoch (its α is the initial one: the genotype is random).
        """
        cfg = self.config
        if cfg.snapshot_from == "any" or epoch > cfg.warmup_epochs:
            return True
        return cfg.warmup_epochs == cfg.epochs and epoch == cfg.epochs

    def step_epoch(self) -> EpochRecord:
        """Run one search epoch; snapshot α, β and the val loss; keep the best snapshot."""
        cfg, started = self.config, time.perf_counter()
        self.model.train()
        search_arch = self.epoch >= cfg.warmup_epochs  # α/β frozen during warm-up
        w_batches = self.w_clips.batches(
            cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=self.epoch
        )
        arch_batches = (
            self.arch_clips.batches(
                cfg.batch_size, shuffle=True, seed=derive_seed(cfg.seed, "arch-order"), epoch=self.epoch
            )
            if search_arch
            else itertools.repeat(None)
        )
        score = RunningScore(self.runtime.torch_device)
        # Both learning rates anneal by cosine to 0 over the search (docs/design.md §5).
        lr = set_cosine_lr(self.w_optimizer, cfg.lr, self.epoch, cfg.epochs)
        arch_lr = set_cosine_lr(self.arch_optimizer, cfg.arch_lr, self.epoch, cfg.epochs)
        for weight_batch, arch_batch in zip(w_batches, arch_batches):
            score.add(*self.stepper.step(weight_batch, arch_batch))
        self.epoch += 1
        train_loss = score.mean_loss()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(self.epoch, "the training loss")
        val_loss, val_top1 = evaluate(self.model, self.arch_clips, self.runtime, cfg.batch_size)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(self.epoch, "the validation loss")

        alphas = [a.detach().cpu().clone() for a in self.model.op_weights]
        betas = [b.detach().cpu().clone() for b in self.model.edge_weights]
        self.snapshots.append({"op_weights": alphas, "edge_weights": betas})
        if self.may_snapshot(self.epoch) and (self.best is None or val_loss < self.best["val_loss"]):
            self.best = {
                "epoch": self.epoch,
                "val_loss": val_loss,
                "op_weights": alphas,
                "edge_weights": betas,
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            }
        genotype = discretize(alphas, betas, self.space, cfg.discretization)
        record = EpochRecord(
            epoch=self.epoch,
            epochs=cfg.epochs,
            train_loss=train_loss,
            train_top1=score.top1(),
            val_loss=val_loss,
            val_top1=val_top1,
            lr=lr,
            seconds=time.perf_counter() - started,
            extra={
                "arch_lr": arch_lr if search_arch else 0.0,
                "genotype": genotype.to_dict(),
                "alpha_entropy": sum(_entropy(F.softmax(a, -1)) for a in alphas) / len(alphas),
                "beta_entropy": sum(
                    _entropy(F.softmax(b[s], -1))
                    for b in betas
                    for s in node_edge_slices(self.space.n_inputs)
                )
                / (len(betas) * 4),
            },
        )
        self.history.append(record)
        return record

    def result(self) -> SearchResult:
        if self.best is None:
            raise RuntimeError(
                f"the search has no snapshot yet: {self.epoch} epoch(s) run, the best is taken "
                f"after the {self.config.warmup_epochs} warm-up epoch(s) (snapshot_from="
                f"{self.config.snapshot_from!r})"
            )
        best = self.best
        chance = 100.0 / self.n_classes
        max_val_top1 = max(r.val_top1 for r in self.history)
        return SearchResult(
            best_epoch=best["epoch"],
            best_val_loss=best["val_loss"],
            genotype=discretize(
                best["op_weights"], best["edge_weights"], self.space, self.config.discretization
            ).with_provenance(self.runtime.provenance(self.config.seed, made_by="search", epoch=best["epoch"])),
            op_weights=best["op_weights"],
            edge_weights=best["edge_weights"],
            history=list(self.history),
            chance_top1=chance,
            max_val_top1=max_val_top1,
            learned=max_val_top1 >= chance + self.config.learned_margin,
        )

    # --- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "config": asdict(self.config),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "history": [r.to_dict() for r in self.history],
            "snapshots": self.snapshots,
            "best": self.best,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; a checkpoint of another setting is refused."""
        if state.get("space") != self.space.to_dict():
            raise CheckpointError(
                f"checkpoint is from search space {state.get('space')}, "
                f"this search is {self.space.to_dict()}"
            )
        ours = asdict(self.config)
        theirs = state.get("config", {})
        differ = sorted(k for k in ours if theirs.get(k) != ours[k])
        if differ:
            raise CheckpointError(
                "checkpoint is from a search with other settings: "
                + ", ".join(f"{k}={theirs.get(k)!r} (now {ours[k]!r})" for k in differ)
            )
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.epoch = state["epoch"]
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.snapshots = state["snapshots"]
        self.best = state["best"]
        torch.set_rng_state(state["torch_rng"])
