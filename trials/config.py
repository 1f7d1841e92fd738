"""A trial's config: the one record :mod:`trials.expand` and :mod:`trials.bohb` write and the
trial jobs, the result rows, the progress bars and the service read (no Ray here).

It crosses process boundaries as a plain, JSON-able dict (:meth:`TrialConfig.to_dict`):
Ray Tune holds it under ``config["trial"]`` (:data:`TUNE_KEY`), checkpoints it with the
experiment and hands it back on resume, and each result row keeps it as sorted JSON in
its ``config`` column (:meth:`TrialConfig.to_json`). A field a stage does not use is None
and is left out of the dict, so each stage's dict has exactly its own keys:

- search, random: setting, channels, partial_k, search, evaluation (thesis §5.2.1–5.2.2);
- controls: setting, channels, partial_k, evaluation, control (the fixed genotype's name);
- baselines: combo, training (§5.2.3);
- bohb: setting, channels, partial_k, genotype, evaluation (``epochs`` = the largest
  budget), min_epochs (§5.3.1, table 5);
- transfer: setting, channels, genotype, evaluation, source: another job's evaluated genotype
  trained from scratch on this grid's store (§5.3.2, table 6).

``modalities`` is always there: None means every modality of the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

__all__ = ["BOHB_HYPERPARAMETERS", "STAGES", "TRIAL_STAGES", "TUNE_KEY", "Setting", "TrialConfig"]

STAGES = ("baselines", "search", "evaluation", "random", "controls", "bohb", "transfer")  # the result tables, in pipeline order
TRIAL_STAGES = tuple(s for s in STAGES if s != "evaluation")  # an evaluation runs inside its search trial
TUNE_KEY = "trial"  # where a grid trial's Tune config holds its TrialConfig dict
# What BOHB samples for a trial's evaluation training (thesis §5.3.1, table 5); the rest is the best run's.
BOHB_HYPERPARAMETERS = ("batch_size", "lr", "optimizer", "weight_decay")


@dataclass(frozen=True)
class Setting:
    """One point of the grid: the thesis' (S, disc, I, C)."""

    operators: str  # operator set, S1 or S2 (adf_service.space.OPERATOR_SETS)
    discretization: str  # all | topk
    n_inputs: int  # I
    n_cells: int  # C

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "a trial config") -> Setting:
        return cls(**_known(cls, data, f"{where}: setting"))


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """Everything one trial needs to run and to be reported; its dicts are not to be changed.

    Fields are in the order the dicts have always had them (a baseline's dict aside).
    """

    stage: str  # one of TRIAL_STAGES
    trial_key: str  # unique in the job, e.g. search-S2-all-I2-C2-r0; the trial's directory name
    setting: Setting | None = None
    repeat: int
    seed: int  # trials.expand.trial_seed(grid seed, trial key)
    store: str  # the feature store's path
    modalities: tuple[str, ...] | None  # None: every modality of the store
    channels: int | None = None  # C_f, the fusion cells' channels
    partial_k: int | None = None  # PC-DARTS' K
    search: dict[str, Any] | None = None  # adf_service.train.SearchConfig's fields (but the seed)
    genotype: str | None = None  # BOHB: the best run's genotype, as JSON
    evaluation: dict[str, Any] | None = None  # TrainConfig's fields for the from-scratch training
    combo: str | None = None  # a baseline's modality combo, e.g. R+F
    training: dict[str, Any] | None = None  # TrainConfig's fields for a baseline
    min_epochs: int | None = None  # BOHB: its smallest budget, HyperBand's unit
    control: str | None = None  # controls: the fixed genotype's name (adf_service.genotype.control_names)
    deterministic: bool | None = None  # the grid's `deterministic: true`: cuDNN / torch deterministic mode
    # transfer: the evaluation whose genotype it trains: {job, trial_key, store, test_top1} of the source job
    source: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.stage not in TRIAL_STAGES:
            allowed = ", ".join(TRIAL_STAGES)
            raise ValueError(f"trial {self.trial_key!r}: unknown stage {self.stage!r}, not in {{{allowed}}}")

    def to_dict(self) -> dict[str, Any]:
        """The plain, JSON-able dict Tune gets; a field the stage does not use is left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name != "modalities":
                continue
            if isinstance(value, Setting):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "a trial config") -> TrialConfig:
        """The record of :meth:`to_dict`'s dict (or of one Tune or a result row kept)."""
        values = _known(cls, data, where)
        if values.get("setting") is not None:
            values["setting"] = Setting.from_dict(values["setting"], where)
        if values.get("modalities") is not None:
            values["modalities"] = tuple(values["modalities"])
        return cls(**values)

    def to_json(self) -> str:
        """The result rows' ``config`` column: the dict as JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "a result row's config") -> TrialConfig:
        return cls.from_dict(json.loads(text), where)

    @classmethod
    def of_tune(cls, config: Mapping[str, Any] | None) -> TrialConfig | None:
        """The trial config in a Tune trial's config; None for a BOHB trial, whose config is BOHB's sample."""
        data = (config or {}).get(TUNE_KEY)
        return cls.from_dict(data, "a Tune trial's config") if data else None

    @staticmethod
    def stage_in_tune(config: Mapping[str, Any] | None) -> str | None:
        """:meth:`of_tune`'s stage without building the record (the progress bars ask every step)."""
        data = (config or {}).get(TUNE_KEY)
        return data["stage"] if data else None

    def with_evaluation(self, **hyper: Any) -> TrialConfig:
        """The same trial with some of its evaluation's training hyper-parameters replaced."""
        return replace(self, evaluation={**(self.evaluation or {}), **hyper})


def _known(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}, not in {{{', '.join(names)}}}")
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        needs = ", ".join(required)
        raise ValueError(f"{where}: {', '.join(missing)} missing (a {cls.__name__} needs {needs})")
    return dict(data)
