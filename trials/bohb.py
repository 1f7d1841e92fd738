"""Stage 5: BOHB on the best evaluated genotype (TuneBOHB + HyperBandForBOHB, docs/design.md §5).

Budget = training epochs from ``min_epochs`` to ``max_epochs`` with reduction factor
``eta``; the space is batch size × lr (log) × optimizer × L2 (log). HyperBandForBOHB pauses
trials and resumes them later, so the trainable checkpoints every epoch (otherwise a
resumed trial restarts at epoch 1 and its budget is wasted). Sampled values arrive as
numpy scalars: they are made plain Python before they reach a config, Parquet or JSON.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import ConfigSpace as CS
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandForBOHB
from ray.tune.search.bohb import TuneBOHB
from ray.tune.search.bohb.bohb_search import _BOHBJobWrapper

from trials.config import BOHB_HYPERPARAMETERS, TrialConfig
from trials.expand import hyperband_s_max, trial_seed
from trials.spec import GridSpec
from trials.trainable import StageTrainable
from trials.warm_start import Observation

__all__ = [
    "BohbTrainable",
    "ResumableHyperBandForBOHB",
    "ResumableTuneBOHB",
    "bohb_config_space",
    "bohb_sample_trial",
    "bohb_trial",
    "bohb_tuner_parts",
]


def bohb_config_space(spec: GridSpec, seed: int) -> CS.ConfigurationSpace:
    """BOHB's space over :data:`~trials.config.BOHB_HYPERPARAMETERS`, with the spec's bounds."""
    b = spec.bohb
    space = CS.ConfigurationSpace(seed=seed)
    space.add(
        [
            CS.CategoricalHyperparameter("batch_size", list(b.batch_sizes)),
            CS.UniformFloatHyperparameter("lr", b.lr[0], b.lr[1], log=True),
            CS.CategoricalHyperparameter("optimizer", list(b.optimizers)),
            CS.UniformFloatHyperparameter("weight_decay", b.weight_decay[0], b.weight_decay[1], log=True),
        ]
    )
    return space


def plain(value: Any) -> Any:
    """numpy scalars (np.int64, np.str_, ...) → int, float, str."""
    return value.item() if hasattr(value, "item") else value


def bohb_trial(spec: GridSpec, best: TrialConfig, genotype_json: str) -> TrialConfig:
    """The constant part of every BOHB trial: the best trial's setting and genotype."""
    return TrialConfig(
        stage="bohb",
        trial_key="bohb",
        setting=best.setting,
        repeat=0,
        seed=trial_seed(spec.seed, "bohb"),
        store=best.store,
        modalities=best.modalities,
        channels=best.channels,
        partial_k=best.partial_k,
        genotype=genotype_json,
        evaluation=dict(best.evaluation or {}, epochs=spec.bohb.max_epochs),
        min_epochs=spec.bohb.min_epochs,
        deterministic=spec.deterministic or None,
    )


def bohb_sample_trial(base: TrialConfig, trial_id: str, sampled: dict[str, Any]) -> TrialConfig:
    """One BOHB trial: the base trial, keyed by its Tune trial id, trained with BOHB's sample."""
    return replace(base, trial_key=f"bohb-{trial_id}").with_evaluation(**sampled)


class BohbTrainable(StageTrainable):
    """A BOHB trial: the base trial with BOHB's sampled hyper-parameters for its training."""

    def setup(self, config: dict[str, Any], base: TrialConfig | None = None) -> None:
        self.sampled = {k: plain(v) for k, v in config.items() if k in BOHB_HYPERPARAMETERS}
        self.min_epochs = base.min_epochs
        self.start(bohb_sample_trial(base, self.trial_id, self.sampled))

    def step(self) -> dict[str, Any]:
        metrics = super().step()
        # HyperBand's budget unit is `min_epochs` epochs, so its smallest rung is min_epochs.
        metrics["budget"] = metrics["epoch"] / self.min_epochs
        # The scheduler may stop a trial at any rung: every result carries the trial's row.
        metrics["rows"] = json.dumps(self.job.rows())
        metrics.setdefault("device", f"{platform.node()} {self.runtime.describe()}")
        metrics["sampled"] = json.dumps(self.sampled)
        return metrics


class ResumableTuneBOHB(TuneBOHB):
    """TuneBOHB that survives ``Tuner.restore`` (ray#39900).

    The searcher's state is pickled with the experiment's, but a trial started or restored
    after that snapshot is unknown to the restored searcher, and TuneBOHB then fails with a
    KeyError on its first result or on completion. The trial's own config holds the sampled
    values, so they are taken from there.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.trial_to_params:
            sampled = self._sampled(result)
            if sampled is not None:
                self.trial_to_params[trial_id] = sampled
        super().on_trial_result(trial_id, result)

    def _sampled(self, result: dict) -> dict[str, Any] | None:
        # Tune hands searchers the flattened result ("config/lr"); a nested "config" is read too.
        config = result.get("config")
        if not isinstance(config, dict):
            config = {k.split("/", 1)[1]: v for k, v in result.items() if k.startswith("config/")}
        names = list(self._space.keys())
        return {k: config[k] for k in names} if all(k in config for k in names) else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.trial_to_params.pop(trial_id, None)
        self.paused.discard(trial_id)
        self.running.discard(trial_id)

    def warm_start(self, observations: Iterable[Observation]) -> int:
        """Give BOHB's model earlier jobs' evaluations (trials/warm_start.py) before its first suggestion,
        as :meth:`on_trial_result` gives it a trial's; how many it took.

        Smallest budget first (hpbandster drops a smaller budget's points once a bigger one has a
        model), and each budget's model is fitted once, after its last point."""
        ordered = sorted(observations, key=lambda o: o.budget)
        for i, seen in enumerate(ordered):
            last = i + 1 == len(ordered) or ordered[i + 1].budget != seen.budget
            job = _BOHBJobWrapper(self._metric_op * seen.loss, seen.budget, seen.config)
            self.bohber.new_result(job, update_model=last)
        return len(ordered)


class ResumableHyperBandForBOHB(HyperBandForBOHB):
    """HyperBandForBOHB that cannot strand a paused trial after ``Tuner.restore``.

    The scheduler's brackets are not part of the experiment snapshot: restored trials are
    re-added to fresh brackets, and a trial paused at a rung of a bracket that never fills
    again waits forever (Tune then idles with nothing running). When nothing runs and
    nothing is pending, the oldest paused trial is resumed instead.

    Its brackets are hpbandster's (the thesis' BOHB) and :func:`trials.expand.bohb_samples`'s:
    ``s_max = floor(log_eta(max_t))``. Ray rounds the logarithm instead, which for e.g. max_t = 50,
    eta = 3 makes a fifth bracket of 81 configurations that the grid's sample count never fills.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Ray's private attributes (checked against Ray 2.60): its bracket sizes (_get_n0) read
        # _s_max_1 when a bracket is made; _max_t_attr is max_t.
        self._s_max_1 = hyperband_s_max(1, self._max_t_attr, self._eta) + 1

    def choose_trial_to_run(self, tune_controller, allow_recurse: bool = True):
        trial = super().choose_trial_to_run(tune_controller, allow_recurse)
        if trial is not None or not allow_recurse:
            return trial
        trials = tune_controller.get_trials()
        if any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials):
            return None
        paused = [t for t in trials if t.status == Trial.PAUSED]
        if not paused:
            return None
        tune_controller.search_alg.searcher.on_unpause(paused[0].trial_id)
        return paused[0]


def bohb_tuner_parts(spec: GridSpec, seed: int) -> tuple[TuneBOHB, HyperBandForBOHB]:
    b = spec.bohb
    search = ResumableTuneBOHB(space=bohb_config_space(spec, seed), metric="val_loss", mode="min", seed=seed)
    scheduler = ResumableHyperBandForBOHB(
        time_attr="budget",  # epochs / min_epochs: budgets run from min_epochs to max_epochs
        max_t=max(b.max_epochs // b.min_epochs, 1),
        reduction_factor=b.eta,
        metric="val_loss",
        mode="min",
    )
    return search, scheduler


def with_base(trial: TrialConfig):
    return tune.with_parameters(BohbTrainable, base=trial)
