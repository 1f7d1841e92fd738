"""The sections of a grid (dataset, space, search, evaluation, baselines, random, controls, bohb, transfer,
resources): one pydantic model each, every number bounded. :class:`trials.spec.GridSpec` assembles them
and parses grid.yaml; docs/grid.md is the reference. Every default is the thesis' value.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from adf_service.features.synth import Layout, SyntheticDataError, SynthSpec
from adf_service.modalities import BASELINE_COMBOS, MODALITIES
from adf_service.space import (
    CELLS_RANGE,
    DISCRETIZATIONS,
    INPUTS_RANGE,
    OPERATOR_SETS,
    SearchSpace,
    SearchSpaceError,
)
from adf_service.train import SearchConfig, TrainConfig
from adf_service.train.fit import OPTIMIZERS
from adf_service.yamldoc import Loc, Problems
from trials.expand import EVERY_CONTROL, all_control_names

__all__ = [
    "BaselineSpec", "BohbSpec", "ControlsSpec", "DatasetSpec", "RandomSpec", "ResourceSpec", "SearchHyper",
    "SpaceAxes", "SyntheticSpec", "TrainHyper", "TransferSpec",
]

Modality = Literal[MODALITIES]
Operators = Literal[tuple(OPERATOR_SETS)]
Discretization = Literal[DISCRETIZATIONS]
NInputs = Literal[INPUTS_RANGE]
NCells = Literal[CELLS_RANGE]
Optimizer = Literal[OPTIMIZERS]
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_MAX_FAILURES = 2  # resources.max_failures: a trial goes on from its checkpoint twice, then fails

# Bounds far above any real grid and low enough that nothing built from a grid can hang the
# service (issue 11: `epochs: 10**100`, `bohb.iterations: 10**18`); docs/grid.md lists them.
MAX_SEED = 2**32 - 1  # numpy's legacy seeds stop here; trial seeds are 31-bit anyway
MAX_EPOCHS = 1000  # the thesis trains 50 + 70
MAX_REPEATS = 1000  # the thesis repeats 6 times
MAX_BATCH = 4096  # the thesis uses 64
MAX_LR = 10.0  # the thesis uses 2e-3; the smoke grid 0.1
MAX_CHANNELS = 4096  # the thesis' stem gives 512
MAX_TRIALS = 100_000  # the thesis grid makes 755
MAX_PATH = 4096  # Linux's PATH_MAX
MAX_RETRIES = 100  # resources.max_failures: a trial that fails this often will not succeed
MAX_SETTINGS = math.prod(map(len, (OPERATOR_SETS, DISCRETIZATIONS, INPUTS_RANGE, CELLS_RANGE)))  # 48: a job's most


def distinct(values: list, keys: list | None = None) -> list:
    """``values`` unchanged, or :class:`Problems` pointing at each repeated item."""
    seen: set = set()
    problems = []
    for i, (value, key) in enumerate(zip(values, keys or values)):
        if key in seen:
            problems.append(((i,), f"{value!r} is listed twice"))
        seen.add(key)
    if problems:
        raise Problems(*problems)
    return values


class Section(BaseModel):
    """A grid section: unknown keys, coerced types and non-finite numbers are errors."""

    # A misspelt key is an error; strict: no true → 1, 2.5 → error rather than 2, "6" → 6.
    # inf and nan (YAML .inf, JSON 1e400) are errors too.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SyntheticSpec(Section):
    """Generate a "what moves where" store (docs/synthetic-data.md) where ``store`` is missing."""

    clips: int = Field(1200, ge=8, le=50_000)  # train + test clips; a quarter are test clips
    classes: int = Field(4, ge=2)  # at most what fits the layout's places (SynthSpec checks)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # at, beside; reach and lag: the label needs a reach of `reach` cells in W or `lag` frames in T
    layout: Layout = "at"
    reach: int | None = Field(None, ge=1, le=64)  # layout reach: the offset d; None: 3
    lag: int | None = Field(None, ge=1, le=64)  # layout lag: the offset L; None: 3

    def store_arguments(self) -> dict[str, Any]:
        """generate_synthetic_store's keyword arguments: a quarter of the clips are test clips."""
        n_test = self.clips // 4
        return {"n_train": self.clips - n_test, "n_test": n_test, "n_classes": self.classes, "seed": self.seed,
                "layout": self.layout, "reach": self.reach, "lag": self.lag}

    @model_validator(mode="after")
    def _library_accepts(self) -> SyntheticSpec:
        try:
            SynthSpec(**self.store_arguments())
        except SyntheticDataError as exc:
            message = str(exc).removeprefix("synthetic store: ")
            key = next((k for k in ("reach", "lag", "layout") if message.startswith(k)), "classes")
            raise Problems(((key,), message)) from None
        return self


class DatasetSpec(Section):
    store: str = Field(min_length=1, max_length=MAX_PATH)  # feature store directory, path or URI
    modalities: list[Annotated[str, Field(max_length=64)]] | None = Field(  # None: every modality of the store
        None, min_length=1, max_length=64)
    synthetic: SyntheticSpec | None = None  # None: the store must exist

    @field_validator("modalities")
    @classmethod
    def _distinct_modalities(cls, values: list[str] | None) -> list[str] | None:
        return values if values is None else distinct(values)


class SpaceAxes(Section):
    """The grid's axes (thesis §5.2.1); every combination is one search setting."""

    operators: list[Operators] = Field(list(OPERATOR_SETS), min_length=1)  # §5.2.1, tables 1–2: S1, S2
    discretizations: list[Discretization] = Field(list(DISCRETIZATIONS), min_length=1)  # §4.2.3: all, topk
    inputs: list[NInputs] = Field(list(INPUTS_RANGE), min_length=1)  # §5.2.1: I ∈ {1, 2, 3}
    cells: list[NCells] = Field(list(CELLS_RANGE), min_length=1)  # §5.2.1: C ∈ {1, 2, 3, 4}
    channels: int = Field(SearchSpace.channels, ge=1, le=MAX_CHANNELS)  # §4.1.3: the stem reduces to 512
    partial_k: int = Field(SearchSpace.partial_k, ge=1, le=MAX_CHANNELS)  # §5.2.2: K = 4, 25 % sampled

    @field_validator("inputs", "cells", mode="before")
    @classmethod
    def _no_booleans(cls, values: Any) -> Any:
        flagged = [  # Literal[1, 2, 3] would take true for 1
            ((i,), f"expected an integer, got {str(v).lower()}")
            for i, v in enumerate(values if isinstance(values, list) else [])
            if isinstance(v, bool)
        ]
        if flagged:
            raise Problems(*flagged)
        return values

    @field_validator("operators", "discretizations", "inputs", "cells")
    @classmethod
    def _distinct_values(cls, values: list) -> list:
        return distinct(values)

    @model_validator(mode="after")
    def _settings_are_valid(self) -> SpaceAxes:
        try:
            for setting in itertools.product(self.operators, self.inputs, self.cells):
                SearchSpace(*setting, channels=self.channels, partial_k=self.partial_k)
        except SearchSpaceError as exc:  # what is left after the fields' checks: K ∤ channels
            raise Problems((("partial_k",), str(exc))) from None
        return self


class SearchHyper(Section):
    """PC-DARTS hyper-parameters; the names are :class:`adf_service.train.SearchConfig`'s (but ``enabled``)."""

    # Stages 2–3; false: no search and no evaluation (e.g. a transfer-only job). random and bohb then
    # default to off: BOHB tunes a searched genotype, and random ones have nothing to be compared with.
    enabled: bool = True
    epochs: int = Field(SearchConfig.epochs, ge=1, le=MAX_EPOCHS)  # §5.2.2: PC-DARTS for 50 epochs
    warmup_epochs: int = Field(SearchConfig.warmup_epochs, ge=0, le=MAX_EPOCHS)  # §5.2.2: α frozen for 5
    batch_size: int = Field(SearchConfig.batch_size, ge=1, le=MAX_BATCH)  # §5.2.2: 64
    lr: float = Field(SearchConfig.lr, gt=0, le=MAX_LR)  # §5.2.2: w by SGD from 2e-3, cosine to 0
    momentum: float = Field(SearchConfig.momentum, ge=0, lt=1)  # §5.2.2: 0.9
    weight_decay: float = Field(SearchConfig.weight_decay, ge=0, le=1)  # §5.2.3: L2 3e-4
    arch_lr: float = Field(SearchConfig.arch_lr, gt=0, le=MAX_LR)  # §5.2.2: α by Adam from 3e-4, cosine to 0
    arch_weight_decay: float = Field(SearchConfig.arch_weight_decay, ge=0, le=1)  # PC-DARTS' code: 1e-3
    second_order: bool = SearchConfig.second_order  # docs/design.md §5: first-order unless asked
    # Not the thesis': the best-val-loss snapshot only from epochs after the α warm-up (a warm-up
    # snapshot is an essentially random genotype); "any" is the thesis' reading.
    snapshot_from: Literal["after_warmup", "any"] = SearchConfig.snapshot_from
    # A supernet whose best val top-1 stays below chance + this many points is "unlearned";
    # -100 counts every search as learned (tests of the pipeline's mechanics on tiny data).
    learned_margin: float = Field(SearchConfig.learned_margin, ge=-100, lt=100)
    edge_norm: bool = SearchConfig.edge_norm  # PC-DARTS' β; false: every edge weighs 1 (K = 1: DARTS)

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> SearchHyper:
        if self.warmup_epochs > self.epochs:
            raise Problems((("warmup_epochs",), f"{self.warmup_epochs} is more than epochs {self.epochs}"))
        return self


class TrainHyper(Section):
    """From-scratch training; the names are :class:`adf_service.train.TrainConfig`'s."""

    epochs: int = Field(TrainConfig.epochs, ge=1, le=MAX_EPOCHS)  # §5.2.2: 70 epochs from scratch
    batch_size: int = Field(TrainConfig.batch_size, ge=1, le=MAX_BATCH)  # §5.2.2: as in the search, 64
    optimizer: Optimizer = TrainConfig.optimizer  # §5.2.3: SGD
    lr: float = Field(TrainConfig.lr, gt=0, le=MAX_LR)  # §5.2.3: 2e-3, cosine-annealed to 0
    momentum: float = Field(TrainConfig.momentum, ge=0, lt=1)  # §5.2.3: 0.9 (SGD only)
    weight_decay: float = Field(TrainConfig.weight_decay, ge=0, le=1)  # §5.2.3: L2 3e-4


class BaselineSpec(Section):
    """Stage 1: late fusion (pool, concat, FC) of layer4 features per modality combo."""

    enabled: bool = True  # §5.2.3: the thesis compares every fusion with these
    combos: list[list[Modality]] = Field([list(c) for c in BASELINE_COMBOS], min_length=1)  # §5.2.3: the 7
    repeats: int = Field(6, ge=1, le=MAX_REPEATS)  # §5.2.3: "each baseline run is repeated six times"
    training: TrainHyper = TrainHyper()  # §5.2.3: the fusion networks' procedure

    @field_validator("combos")
    @classmethod
    def _distinct_combos(cls, combos: list[list[str]]) -> list[list[str]]:
        problems = [((i,), "lists no modality") for i, combo in enumerate(combos) if not combo]
        for i, combo in enumerate(combos):
            try:
                distinct(combo)
            except Problems as exc:
                problems += [((i, *loc), message) for loc, message in exc.problems]
        try:
            distinct(combos, keys=[frozenset(c) for c in combos])
        except Problems as exc:
            problems += exc.problems
        if problems:
            raise Problems(*problems)
        return combos


class RandomSpec(Section):
    """Stage 4: a random genotype per setting, evaluated like a searched one."""

    enabled: bool = True  # §5.3.1: searched vs randomly sampled architectures (table 4)
    repeats: int = Field(6, ge=1, le=MAX_REPEATS)  # docs/design.md §5: repeated like the search


class ControlsSpec(Section):
    """Fixed genotypes per setting, evaluated like a searched one: does operator choice matter on
    this data at all? (adf_service.genotype.control_genotype; docs/grid.md "controls")."""

    enabled: bool = False
    # Names from adf_service.genotype.control_names (all_skip, all_conv_1x1x1, all_<op>), or
    # `every`: all of each setting's. A name runs in the settings whose operator set has its op.
    genotypes: list[Annotated[str, Field(max_length=64)]] = Field(
        ["all_skip", "all_conv_1x1x1"], min_length=1, max_length=64)
    repeats: int = Field(1, ge=1, le=MAX_REPEATS)

    @field_validator("genotypes")
    @classmethod
    def _known_controls(cls, names: list[str]) -> list[str]:
        known = all_control_names()
        problems = [((i,), f"{name!r} is no control genotype: {{{EVERY_CONTROL}, {', '.join(known)}}}")
                    for i, name in enumerate(names) if name != EVERY_CONTROL and name not in known]
        if EVERY_CONTROL in names and len(names) > 1:
            problems.append(((names.index(EVERY_CONTROL),), f"{EVERY_CONTROL!r} already names every control"))
        if problems:
            raise Problems(*problems)
        return distinct(names)


class BohbSpec(Section):
    """Stage 5: BOHB on the best evaluated genotype (thesis table 5)."""

    enabled: bool = True  # §5.3.1: BOHB on the best found architecture
    # Which evaluation is "best": val (lowest val loss) by default; test (best test top-1) is the
    # thesis' choice, a selection on the test set (issue 12)
    select: Literal["val", "test"] = "val"
    iterations: int = Field(10, ge=1, le=100)  # table 5: 10 iterations
    min_epochs: int = Field(2, ge=1, le=MAX_EPOCHS)  # table 5: budgets from 2 ...
    max_epochs: int = Field(70, ge=1, le=MAX_EPOCHS)  # ... to 70 epochs
    eta: int = Field(3, ge=2, le=100)  # table 5: η = 3
    batch_sizes: list[Annotated[int, Field(ge=1, le=MAX_BATCH)]] = Field(  # table 5: categorical
        [4, 8, 16, 32], min_length=1, max_length=64)
    lr: list[Annotated[float, Field(le=MAX_LR)]] = Field(  # table 5: [low, high], log scale
        [1e-5, 1e-2], min_length=2, max_length=2)
    optimizers: list[Optimizer] = Field(sorted(OPTIMIZERS), min_length=1)  # table 5: Adam, AdamW, SGD
    weight_decay: list[Annotated[float, Field(le=1)]] = Field(  # table 5: L2, log scale
        [1e-5, 2e-2], min_length=2, max_length=2)
    samples: int | None = Field(None, ge=1, le=MAX_TRIALS)  # None: what `iterations` HyperBand iterations sample
    # Not the thesis': earlier jobs whose BOHB trials seed this BOHB's model (trials/warm_start.py):
    # job directories (<storage>/<job id>, paths or URIs) for `run`; the service takes ids of your jobs
    warm_start: list[Annotated[str, Field(min_length=1, max_length=MAX_PATH)]] = Field([], max_length=16)

    @field_validator("batch_sizes", "optimizers", "warm_start")
    @classmethod
    def _distinct_choices(cls, values: list) -> list:
        return distinct(values)

    @model_validator(mode="after")
    def _ranges(self) -> BohbSpec:
        problems: list[tuple[Loc, str]] = []
        if self.min_epochs >= self.max_epochs:
            message = f"{self.min_epochs} must be below max_epochs {self.max_epochs}"
            problems.append((("min_epochs",), message))
        for name in ("lr", "weight_decay"):
            low, high = getattr(self, name)
            if not 0 < low < high:
                message = f"[{low:g}, {high:g}] needs 0 < low < high (sampled on a log scale)"
                problems.append(((name,), message))
        if problems:
            raise Problems(*problems)
        return self


class TransferSpec(Section):
    """The best genotypes of a finished job trained from scratch on this grid's store (thesis §5.3.2, table 6)."""

    enabled: bool = False  # §5.3.2: HMDB51's networks evaluated on UCF101
    from_job: str | None = Field(None, min_length=1, max_length=MAX_PATH)  # <storage>/<job id>: path or URI
    # The best evaluation of each of its settings, ranked by its bohb.select, at most this many
    genotypes: int = Field(1, ge=1, le=MAX_SETTINGS)  # table 6 transfers 12, the best of each (S, disc, I)
    repeats: int = Field(3, ge=1, le=MAX_REPEATS)
    training: TrainHyper | None = None  # None: the grid's `evaluation` (§5.2.2)

    @model_validator(mode="after")
    def _from_a_finished_job(self) -> TransferSpec:
        if not self.enabled:
            return self
        if self.from_job is None:
            raise Problems((("from_job",), "required when transfer is enabled: the directory of a finished job "
                                           "(<storage>/<job id>), a path or a URI"))
        return self  # whether it holds results is read later (transfer_source_problem): parsing reads no file


class ResourceSpec(Section):
    """What Ray reserves for every trial."""

    gpus_per_trial: float = Field(1.0, ge=0, le=16)  # below 1: trials share a GPU; 0: CPU only
    cpus_per_trial: float = Field(1.0, gt=0, le=256)  # one trial runs on one node
    # No live node has a GPU: run the trials on CPUs when true; else ask for the GPUs and wait
    # (an autoscaling cluster adds a GPU node for them). `run` on a Ray of its own sets it.
    allow_cpu_fallback: bool = False
    # Trials no alive node can hold (trials/pending.py, reported after a minute): "wait" for the cluster
    # to grow (a KubeRay GPU group at minReplicas 0 adds its node in minutes) up to pending_timeout_s,
    # "fail" at once; either way the job then fails saying what a trial asks and what the nodes have.
    when_unschedulable: Literal["wait", "fail"] = "wait"
    pending_timeout_s: float = Field(1800.0, gt=0, le=86_400)  # a cloud GPU node: provisioning + image pull
    # Tune's FailureConfig: a failed trial (its node lost, its process killed, an error it raised) goes on
    # from its last checkpoint this many times; one failure more and its rows are `failed`.
    max_failures: int = Field(DEFAULT_MAX_FAILURES, ge=0, le=MAX_RETRIES)

    @model_validator(mode="after")
    def _whole_above_one(self) -> ResourceSpec:
        problems = [
            ((name,), f"{value:g}: Ray takes fractions only below 1; above, whole numbers")
            for name, value in self.model_dump(include={"gpus_per_trial", "cpus_per_trial"}).items()
            if value > 1 and value != int(value)
        ]
        if problems:
            raise Problems(*problems)
        return self


