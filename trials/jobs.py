"""From a trial config to the library loops it runs, one epoch per step (no Ray here).

A trial config is a :class:`~trials.config.TrialConfig` made by :mod:`trials.expand` (or
:mod:`trials.bohb`). ``make_trial_job(config)`` returns a :class:`SettingJob` (a search, then
the from-scratch evaluation of its best-val genotype, in one trial so the evaluation starts
the moment its search ends) or a :class:`TrainJob` (a baseline, or a random or BOHB
genotype's evaluation). Both step one epoch at a time, report a flat metrics dict,
checkpoint to a dict and summarise themselves as result rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from adf_service.features.dataset import ClipSet
from adf_service.features.store import FeatureStore
from adf_service.genotype import Genotype, control_genotype, random_genotype
from adf_service.space import SearchSpace
from adf_service.train import (
    Runtime,
    SearchConfig,
    SearchRun,
    TrainConfig,
    TrainRun,
    baseline_run,
    evaluation_run,
)
from adf_service.train.runtime import EpochRecord
from trials.config import TrialConfig

__all__ = ["SettingJob", "TrainJob", "make_trial_job"]


def _space(config: TrialConfig) -> SearchSpace:
    s = config.setting
    return SearchSpace(s.operators, s.n_inputs, s.n_cells, config.channels, config.partial_k)


def _modalities(config: TrialConfig) -> list[str] | None:
    return list(config.modalities) if config.modalities is not None else None


def _train_config(hyper: dict[str, Any], seed: int) -> TrainConfig:
    return TrainConfig(**hyper, seed=seed)


def _metrics(phase: str, record: EpochRecord) -> dict[str, Any]:
    out = {
        "phase": phase,
        "epoch": record.epoch,
        "epochs": record.epochs,
        "train_loss": record.train_loss,
        "val_loss": record.val_loss,
        "val_top1": record.val_top1,
        "test_top1": record.test_top1,
        "lr": record.lr,
        "epoch_seconds": record.seconds,
        # Tune keeps a timestamp the trial reports; its own is whole seconds, too coarse to tell
        # which trials ran at once (the per-epoch table's `timestamp`)
        "timestamp": time.time(),
    }
    for key in ("alpha_entropy", "beta_entropy"):
        if key in record.extra:
            out[key] = record.extra[key]
    if "genotype" in record.extra:
        out["genotype"] = Genotype.from_dict(record.extra["genotype"]).to_json(indent=None)
    return out


class TrainJob:
    """A from-scratch training: a late-fusion baseline, or a random, control or BOHB genotype's evaluation."""

    def __init__(self, config: TrialConfig, runtime: Runtime):
        self.config = config
        store = FeatureStore.open(config.store)
        self.genotype: Genotype | None = None
        if config.stage == "baselines":
            self.run: TrainRun = baseline_run(
                store, _modalities(config), _train_config(config.training, config.seed), runtime
            )
            return
        # BOHB: the best genotype, with sampled hyper-parameters; transfer: another job's, on this store
        if config.stage in ("bohb", "transfer"):
            self.genotype = Genotype.from_json(config.genotype, where=config.trial_key)
        elif config.stage == "controls":  # a fixed genotype: every kept edge one operator
            self.genotype = control_genotype(_space(config), config.setting.discretization, config.control)
        else:  # random: a genotype drawn from the trial's seed
            method = config.setting.discretization
            self.genotype = random_genotype(_space(config), method, random.Random(config.seed))
        self.run = evaluation_run(
            self.genotype,
            store,
            config.channels,
            _train_config(config.evaluation, config.seed),
            runtime,
            _modalities(config),
        )

    @property
    def done(self) -> bool:
        return self.run.done

    def step(self) -> dict[str, Any]:
        return _metrics("train", self.run.step_epoch())

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.run.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.load_state_dict(state["train"])

    def rows(self) -> dict[str, dict[str, Any]]:
        """Result rows keyed by table: this job fills one row of its stage's table."""
        result = self.run.result()
        row = {
            "best_epoch": result.best_epoch,
            "val_loss": result.best_val_loss,
            "val_top1": result.val_top1,
            "test_top1": result.test_top1,
            "fusion_params": result.params,
            "fusion_flops": result.flops,
            "genotype": self._genotype_json(),
        }
        return {self.config.stage: row}

    def _genotype_json(self) -> str | None:
        if self.genotype is None:
            return None
        genotype = self.genotype
        if self.config.stage not in ("bohb", "transfer"):  # they keep the provenance of the search that found it
            genotype = genotype.with_provenance(self.run.runtime.provenance(
                self.config.seed, made_by=f"{self.config.stage} {self.config.trial_key}"))
        return genotype.to_json(indent=None)


class SettingJob:
    """Search one setting with PC-DARTS, then train its best-val genotype from scratch."""

    def __init__(self, config: TrialConfig, runtime: Runtime):
        self.config, self.runtime = config, runtime
        self.store = FeatureStore.open(config.store)
        self.search = SearchRun(
            _space(config),
            ClipSet.of(self.store, "train", "layer3", _modalities(config)),
            SearchConfig(
                **config.search,
                discretization=config.setting.discretization,
                seed=config.seed,
            ),
            runtime,
        )
        self.evaluation: TrainRun | None = None
        self.search_seconds = 0.0

    def _start_evaluation(self) -> None:
        self.evaluation = evaluation_run(
            self.search.result().genotype,
            self.store,
            self.config.channels,
            _train_config(self.config.evaluation, self.config.seed),
            self.runtime,
            _modalities(self.config),
        )

    @property
    def done(self) -> bool:
        return self.search.done and self.evaluation is not None and self.evaluation.done

    def step(self) -> dict[str, Any]:
        if not self.search.done:
            started = time.perf_counter()
            metrics = _metrics("search", self.search.step_epoch())
            self.search_seconds += time.perf_counter() - started
            return metrics
        if self.evaluation is None:
            self._start_evaluation()
        return _metrics("evaluation", self.evaluation.step_epoch())

    def state_dict(self) -> dict[str, Any]:
        return {
            "search": self.search.state_dict(),
            "search_seconds": self.search_seconds,
            "evaluation": self.evaluation.state_dict() if self.evaluation else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.search.load_state_dict(state["search"])
        self.search_seconds = state["search_seconds"]
        if state["evaluation"] is not None:
            self._start_evaluation()
            self.evaluation.load_state_dict(state["evaluation"])

    def rows(self) -> dict[str, dict[str, Any]]:
        found = self.search.result()
        rows = {
            "search": {
                "best_epoch": found.best_epoch,
                "val_loss": found.best_val_loss,
                "val_top1": found.max_val_top1,  # the supernet's best; the snapshot is the best val loss's
                "learned": found.learned,
                "genotype": found.genotype.to_json(indent=None),
                "wall_seconds": self.search_seconds,
            }
        }
        if self.evaluation is not None and self.evaluation.history:
            result = self.evaluation.result()
            rows["evaluation"] = {
                "best_epoch": result.best_epoch,
                "val_loss": result.best_val_loss,
                "val_top1": result.val_top1,
                "test_top1": result.test_top1,
                "fusion_params": result.params,
                "fusion_flops": result.flops,
                "learned": found.learned,  # an unlearned search's genotype is no searched result
                "genotype": found.genotype.to_json(indent=None),
                "wall_seconds": sum(r.seconds for r in result.history),
            }
        return rows


def make_trial_job(
    config: TrialConfig | Mapping[str, Any], runtime: Runtime | None = None
) -> SettingJob | TrainJob:
    """The job a trial config (or its dict) describes.

    search → SettingJob; baselines, random, controls, bohb → TrainJob.
    """
    if not isinstance(config, TrialConfig):
        config = TrialConfig.from_dict(config)
    runtime = runtime or Runtime(deterministic=bool(config.deterministic))
    return SettingJob(config, runtime) if config.stage == "search" else TrainJob(config, runtime)
