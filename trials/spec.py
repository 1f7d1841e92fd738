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

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adf_service.space import (
    MIN_MIXED_OP_CHANNELS,
    mixed_op_channels,
)
from adf_service.yamldoc import DocumentError, DocumentProblem, Loc, Problems, compose, explain, load_json
from trials.expand import ray_trial_counts, stage_counts
from trials.grid_sections import (
    MAX_PATH,
    MAX_REPEATS,
    MAX_SEED,
    MAX_TRIALS,
    NAME_PATTERN,
    BaselineSpec,
    BohbSpec,
    ControlsSpec,
    DatasetSpec,
    RandomSpec,
    ResourceSpec,
    SearchHyper,
    Section,
    SpaceAxes,
    TrainHyper,
    TransferSpec,
    distinct,
)
from trials.storage import JobStorage

__all__ = [
    "GridSpec",
    "GridSpecError",
    "grid_warnings",
    "load_grid",
    "load_grid_with_lines",
    "parse_grid",
    "parse_grid_json",
    "parse_grid_with_lines",
    "transfer_source_problem",
    "validate_grid",
]

class GridSpecError(DocumentError):
    """A grid (YAML file or JSON body) that does not describe a valid job; one line per problem.

    ``problems`` are :class:`~adf_service.yamldoc.DocumentProblem` (path, message, line), the
    first :data:`~adf_service.yamldoc.MAX_PROBLEMS` in line order; ``more`` counts the others.
    """


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


class GridSpec(Section):
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
        return distinct(values)

    @field_validator("name")
    @classmethod
    def _name_fits_a_path(cls, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name):
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
