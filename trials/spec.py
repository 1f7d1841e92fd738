"""grid.yaml: the job spec, validated by pydantic, with errors that name the key and the line.

A grid names a feature store, the search-space axes of thesis §5.2.1, the training
hyper-parameters of §5.2.2–5.2.3, the baseline, random-architecture, BOHB and transfer (§5.3.2)
stages, and where and how the trials run. Every default is the thesis' value; docs/grid.md is the
reference. :func:`load_grid` / :func:`parse_grid` report every problem on its own line,
``grid.yaml line 12: space.operators[1]: 'S3' not in {S1, S2}``; a JSON body goes through
:func:`parse_grid_json` (same messages, no lines), a parsed one through :func:`validate_grid`.
Every number has a bound, so a grid that validates expands into at most ``max_trials`` trials
quickly; reading refuses what could hang or crash a parser (:mod:`adf_service.yamldoc`).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adf_service.features.synth import Layout, SyntheticDataError, SynthSpec
from adf_service.modalities import BASELINE_COMBOS, MODALITIES
from adf_service.space import (
    CELLS_RANGE,
    DISCRETIZATIONS,
    INPUTS_RANGE,
    MIN_MIXED_OP_CHANNELS,
    OPERATOR_SETS,
    SearchSpace,
    SearchSpaceError,
    mixed_op_channels,
)
from adf_service.train import SearchConfig, TrainConfig
from adf_service.train.fit import OPTIMIZERS
from adf_service.yamldoc import DocumentError, DocumentProblem, Loc, Problems, compose, explain, load_json
from trials.expand import EVERY_CONTROL, all_control_names, ray_trial_counts, stage_counts
from trials.storage import JobStorage

__all__ = [
    "BaselineSpec",
    "ControlsSpec",
    "grid_warnings",
    "transfer_source_problem",
    "BohbSpec",
    "DatasetSpec",
    "GridSpec",
    "GridSpecError",
    "RandomSpec",
    "ResourceSpec",
    "SearchHyper",
    "SpaceAxes",
    "SyntheticSpec",
    "TrainHyper",
    "TransferSpec",
    "load_grid",
    "load_grid_with_lines",
    "parse_grid",
    "parse_grid_json",
    "parse_grid_with_lines",
    "validate_grid",
]

Modality = Literal[MODALITIES]
Operators = Literal[tuple(OPERATOR_SETS)]
Discretization = Literal[DISCRETIZATIONS]
NInputs = Literal[INPUTS_RANGE]
NCells = Literal[CELLS_RANGE]
Optimizer = Literal[OPTIMIZERS]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

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
MAX_SETTINGS = math.prod(map(len, (OPERATOR_SETS, DISCRETIZATIONS, INPUTS_RANGE, CELLS_RANGE)))  # 48: a job's most


class GridSpecError(DocumentError):
    """A grid (YAML file or JSON body) that does not describe a valid job; one line per problem.

    ``problems`` are :class:`~adf_service.yamldoc.DocumentProblem` (path, message, line), the
    first :data:`~adf_service.yamldoc.MAX_PROBLEMS` in line order; ``more`` counts the others.
    """


def _distinct(values: list, keys: list | None = None) -> list:
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


class _Spec(BaseModel):
    # A misspelt key is an error; strict: no true → 1, 2.5 → error rather than 2, "6" → 6.
    # inf and nan (YAML .inf, JSON 1e400) are errors too.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SyntheticSpec(_Spec):
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


class DatasetSpec(_Spec):
    store: str = Field(min_length=1, max_length=MAX_PATH)  # feature store directory, path or URI
    modalities: list[Annotated[str, Field(max_length=64)]] | None = Field(  # None: every modality of the store
        None, min_length=1, max_length=64)
    synthetic: SyntheticSpec | None = None  # None: the store must exist

    @field_validator("modalities")
    @classmethod
    def _distinct_modalities(cls, values: list[str] | None) -> list[str] | None:
        return values if values is None else _distinct(values)


class SpaceAxes(_Spec):
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
        return _distinct(values)

    @model_validator(mode="after")
    def _settings_are_valid(self) -> SpaceAxes:
        try:
            for setting in itertools.product(self.operators, self.inputs, self.cells):
                SearchSpace(*setting, channels=self.channels, partial_k=self.partial_k)
        except SearchSpaceError as exc:  # what is left after the fields' checks: K ∤ channels
            raise Problems((("partial_k",), str(exc))) from None
        return self


class SearchHyper(_Spec):
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


class TrainHyper(_Spec):
    """From-scratch training; the names are :class:`adf_service.train.TrainConfig`'s."""

    epochs: int = Field(TrainConfig.epochs, ge=1, le=MAX_EPOCHS)  # §5.2.2: 70 epochs from scratch
    batch_size: int = Field(TrainConfig.batch_size, ge=1, le=MAX_BATCH)  # §5.2.2: as in the search, 64
    optimizer: Optimizer = TrainConfig.optimizer  # §5.2.3: SGD
    lr: float = Field(TrainConfig.lr, gt=0, le=MAX_LR)  # §5.2.3: 2e-3, cosine-annealed to 0
    momentum: float = Field(TrainConfig.momentum, ge=0, lt=1)  # §5.2.3: 0.9 (SGD only)
    weight_decay: float = Field(TrainConfig.weight_decay, ge=0, le=1)  # §5.2.3: L2 3e-4


class BaselineSpec(_Spec):
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
                _distinct(combo)
            except Problems as exc:
                problems += [((i, *loc), message) for loc, message in exc.problems]
        try:
            _distinct(combos, keys=[frozenset(c) for c in combos])
        except Problems as exc:
            problems += exc.problems
        if problems:
            raise Problems(*problems)
        return combos


class RandomSpec(_Spec):
    """Stage 4: a random genotype per setting, evaluated like a searched one."""

    enabled: bool = True  # §5.3.1: searched vs randomly sampled architectures (table 4)
    repeats: int = Field(6, ge=1, le=MAX_REPEATS)  # docs/design.md §5: repeated like the search


class ControlsSpec(_Spec):
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
        return _distinct(names)


class BohbSpec(_Spec):
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
        return _distinct(values)

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


class TransferSpec(_Spec):
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


def transfer_source_problem(spec: GridSpec) -> str | None:
    """Why ``transfer.from_job`` names no job with an evaluation table (the genotypes a transfer takes);
    None when it does or transfer is off. `validate` and `run` ask; parsing a grid reads no file."""
    if not spec.transfer.enabled or spec.transfer.from_job is None:
        return None
    job = spec.transfer.from_job
    try:
        storage = JobStorage.at(job if "://" in job else Path(job).expanduser().resolve())
        if not storage.exists():
            return f"transfer.from_job: {job!r}: no such job directory"
        if not storage.exists("results", "evaluation.parquet"):
            return (f"transfer.from_job: {job!r} has no result tables (results/evaluation.parquet): name "
                    "the directory of a finished job, <storage>/<job id>")
    except (ValueError, OSError) as exc:  # a URI pyarrow cannot open, or cannot reach
        return f"transfer.from_job: {job!r}: {exc}"
    return None


class ResourceSpec(_Spec):
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


class GridSpec(_Spec):
    """One job: every stage's trials, how they run and where their results go."""

    name: str  # 1–64 characters of A–Z a–z 0–9 _ . -, starting with a letter or digit: names the job
    dataset: DatasetSpec
    space: SpaceAxes = SpaceAxes()  # §5.2.1: 3 × 4 × 2 × 2 = 48 settings
    repeats: int = Field(6, ge=1, le=MAX_REPEATS)  # §5.2.1: every setting searched six times
    search: SearchHyper = SearchHyper()  # §5.2.2
    evaluation: TrainHyper = TrainHyper()  # §5.2.2: "the same as those used for searching"
    baselines: BaselineSpec = BaselineSpec()  # §5.2.3
    random: RandomSpec = RandomSpec()  # §5.3.1
    controls: ControlsSpec = ControlsSpec()  # not in the thesis: fixed genotypes beside searched and random
    bohb: BohbSpec = BohbSpec()  # §5.3.1, table 5
    transfer: TransferSpec = TransferSpec()  # §5.3.2, table 6
    resources: ResourceSpec = ResourceSpec()
    max_concurrent_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)  # None: as many as the cluster fits
    seed: int = Field(0, ge=0, le=MAX_SEED)  # every trial's seed derives from it (trials.expand.trial_seed)
    # cuDNN deterministic mode, no benchmark autotuner, torch's deterministic algorithms (slower on a
    # GPU; a CPU run is deterministic anyway). Every genotype JSON records the flags it ran with.
    deterministic: bool = False
    storage: str = Field("runs", min_length=1, max_length=MAX_PATH)  # local path or pyarrow URI (s3://, gs://)
    max_trials: int = Field(2000, ge=1, le=MAX_TRIALS)  # refuse bigger grids: `repeats: 600` must not launch 28,800
    # The service's queue admits higher first (then in submission order); above 0 only an admin may ask
    priority: int = Field(0, ge=-100, le=100)
    # The service POSTs the job's outcome here when it ends (api/notify.py): http(s) only
    notify_url: str | None = Field(None, min_length=1, max_length=2048, pattern=r"^https?://")
    # Not the thesis': earlier jobs whose succeeded trials this job takes instead of running them, each
    # trial whose spec and feature store are the same (trials/reuse.py): job directories for `run`, ids of
    # your succeeded jobs through the service
    reuse_from: list[Annotated[str, Field(min_length=1, max_length=MAX_PATH)]] = Field([], max_length=16)

    @field_validator("reuse_from")
    @classmethod
    def _distinct_sources(cls, values: list) -> list:
        return _distinct(values)

    @field_validator("name")
    @classmethod
    def _name_fits_a_path(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"{name!r}: 1–64 characters of A–Z a–z 0–9 _ . -, starting with a letter or digit "
                "(it names the job's directory)"
            )
        return name

    @model_validator(mode="before")
    @classmethod
    def _no_search_no_random_or_bohb(cls, data: Any) -> Any:
        """With ``search.enabled: false``, random and bohb default to off (SearchHyper.enabled says why)."""
        if not (isinstance(data, dict) and isinstance(data.get("search"), dict)
                and data["search"].get("enabled") is False):
            return data
        data = dict(data)
        for stage in ("random", "bohb"):
            section = data.get(stage, {})
            if isinstance(section, dict) and "enabled" not in section:
                data[stage] = {**section, "enabled": False}
        return data

    @model_validator(mode="after")
    def _combos_in_dataset_and_size(self) -> GridSpec:
        problems: list[tuple[Loc, str]] = []
        if self.bohb.enabled and not self.search.enabled:
            problems.append((("bohb", "enabled"), "BOHB tunes the best searched genotype, and search.enabled is "
                             "false: set bohb.enabled: false, or turn the search on"))
        chosen = self.dataset.modalities
        if chosen is not None and self.baselines.enabled:
            problems += [
                (("baselines", "combos", i, j), f"{m!r} not in dataset.modalities {{{', '.join(chosen)}}}")
                for i, combo in enumerate(self.baselines.combos)
                for j, m in enumerate(combo)
                if m not in chosen
            ]
        counts = stage_counts(self)
        trials = sum(ray_trial_counts(self).values())
        if not trials:
            problems.append((("search", "enabled"), "the grid runs no trial: with the search off, enable "
                             "baselines, random, controls or transfer"))
        if trials > self.max_trials:
            listed = ", ".join(f"{stage} {n:,}" for stage, n in counts.items())
            problems.append(
                (
                    ("max_trials",),
                    f"the grid makes {trials:,} Ray trials ({listed}; each evaluation runs in its "
                    f"search trial), more than max_trials {self.max_trials:,}: lower repeats or the "
                    "axes, or raise max_trials",
                )
            )
        if problems:
            raise Problems(*problems)
        return self


def grid_warnings(spec: GridSpec) -> list[str]:
    """What in a valid grid is likely not to work: today, partial channels too thin to learn."""
    thin = mixed_op_channels(spec.space.channels, spec.space.partial_k)
    if thin >= MIN_MIXED_OP_CHANNELS or not spec.search.enabled:
        return []
    return [f"space: channels {spec.space.channels} / partial_k {spec.space.partial_k} sends {thin} channels "
            f"through each mixed op, fewer than {MIN_MIXED_OP_CHANNELS}: such supernets did not learn in our "
            "measurements (docs/synthetic-data.md); lower partial_k or raise channels"]


def parse_grid(text: str, source: str = "<grid>") -> GridSpec:
    """Validate a grid.yaml document; ``source`` names it in the messages.

    Raises GridSpecError with one ``<source> line <n>: <key path>: <problem>`` per problem.
    """
    return parse_grid_with_lines(text, source)[0]


def parse_grid_with_lines(text: str, source: str = "<grid>") -> tuple[GridSpec, dict[Loc, int]]:
    """:func:`parse_grid`, and the line of every key path in ``text`` (for the checks before launch,
    :func:`trials.checks.launch_problems`, whose problems name lines too)."""
    data, lines = compose(text, source, error=GridSpecError)
    return _validate(data, source, lines), lines


def parse_grid_json(text: str, source: str = "<json>") -> GridSpec:
    """Validate a grid sent as JSON text: the messages of :func:`parse_grid`, without key lines.

    Refuses what ``json.loads`` alone would not: a key given twice (JSON keeps the last),
    nesting deeper than 64, and a document over the size limit (:func:`adf_service.yamldoc.load_json`).
    """
    return _validate(load_json(text, source, error=GridSpecError), source, {})


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid.yaml file (see :func:`parse_grid`)."""
    return load_grid_with_lines(path)[0]


def load_grid_with_lines(path: str | Path) -> tuple[GridSpec, dict[Loc, int]]:
    """:func:`load_grid`, and the line of every key path in the file (:func:`parse_grid_with_lines`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GridSpecError(str(path), [DocumentProblem("", f"cannot read the grid: {exc}")]) from None
    return parse_grid_with_lines(text, str(path))


def validate_grid(data: Any, source: str = "<json>") -> GridSpec:
    """Validate a parsed grid (e.g. the service's own JSON): GridSpecError messages as for a file, without lines."""
    return _validate(data, source, {})


def _validate(data: Any, source: str, lines: dict[Loc, int]) -> GridSpec:
    if not isinstance(data, dict):
        got = "empty" if data is None else f"a {type(data).__name__}"
        message = f"a grid is a mapping of keys ({', '.join(GridSpec.model_fields)}); this one is {got}"
        raise GridSpecError(source, [DocumentProblem("", message, lines.get(()))])
    try:
        return GridSpec.model_validate(data)
    except ValidationError as exc:
        raise GridSpecError(source, explain(exc, GridSpec, lines)) from None
