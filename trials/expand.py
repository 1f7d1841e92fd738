"""Grid → trial configs: one :class:`~trials.config.TrialConfig` per trial, in a fixed order (no Ray here).

Each stage has one function (:func:`baseline_trials`, :func:`search_trials`,
:func:`random_trials`, :func:`control_trials`, :func:`transfer_trials`); :func:`stage_counts` says how many
trials each stage makes without building them (for transfer, at most: its source job is not read).
:func:`transfer_trials` alone reads files: the finished job it takes its genotypes from, and the stores. A trial's seed depends only on the grid's ``seed`` and the trial's key
(:func:`trial_seed`), so adding a setting or a repeat to a grid leaves every other trial's
seed as it was. Trials are ordered repeat by repeat: the first pass covers every setting
before any setting runs twice.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from adf_service.features.manifest import FUSION_LAYER, FeatureStoreError, Manifest, load_manifest
from adf_service.genotype import control_names
from adf_service.modalities import combo_name
from adf_service.space import OPERATOR_SETS, SearchSpace
from trials.config import Setting, TrialConfig

if TYPE_CHECKING:
    from trials.spec import GridSpec

__all__ = [
    "EVERY_CONTROL",
    "TransferError",
    "all_control_names",
    "baseline_trials",
    "control_trials",
    "hyperband_s_max",
    "setting_controls",
    "bohb_samples",
    "random_trials",
    "ray_trial_counts",
    "search_trials",
    "setting_key",
    "settings",
    "stage_counts",
    "transfer_trials",
    "trial_seed",
]


def setting_key(operators: str, discretization: str, n_inputs: int, n_cells: int) -> str:
    """The thesis' (S, disc, I, C) as one name, e.g. ``S2-all-I2-C2``."""
    return f"{operators}-{discretization}-I{n_inputs}-C{n_cells}"


def trial_seed(grid_seed: int, *parts: object) -> int:
    """A seed in [0, 2**31) for one trial: CRC-32 of ``"<grid_seed>/<part>/<part>..."``.

    The trial functions call it with the trial key, so ``trial_seed(0, "search-S2-all-I2-C2-r0")``
    is ``zlib.crc32(b"0/search-S2-all-I2-C2-r0") & 0x7FFFFFFF``; stable across runs,
    machines and Python versions (unlike ``hash``).
    """
    canonical = "/".join(str(part) for part in (grid_seed, *parts))
    return zlib.crc32(canonical.encode()) & 0x7FFF_FFFF


def settings(spec: GridSpec) -> list[Setting]:
    """Every (operators, discretization, n_inputs, n_cells) of the grid, in the spec's order."""
    space = spec.space
    return [
        Setting(s, d, i, c)
        for s, d, i, c in itertools.product(space.operators, space.discretizations, space.inputs, space.cells)
    ]


def _setting_trials(spec: GridSpec, stage: str, repeats: int) -> list[TrialConfig]:
    trials = []
    for repeat in range(repeats):
        for setting in settings(spec):
            key = f"{stage}-{setting_key(**setting.to_dict())}-r{repeat}"
            trials.append(
                TrialConfig(
                    stage=stage,
                    trial_key=key,
                    setting=setting,
                    repeat=repeat,
                    seed=trial_seed(spec.seed, key),
                    store=spec.dataset.store,
                    modalities=tuple(spec.dataset.modalities) if spec.dataset.modalities else None,
                    channels=spec.space.channels,
                    partial_k=spec.space.partial_k,
                    search=spec.search.model_dump(exclude={"enabled"}),
                    evaluation=spec.evaluation.model_dump(),
                    deterministic=spec.deterministic or None,
                )
            )
    return trials


def search_trials(spec: GridSpec) -> list[TrialConfig]:
    """Stages 2–3: one trial per setting × repeat; it searches, then evaluates its genotype."""
    return _setting_trials(spec, "search", spec.repeats) if spec.search.enabled else []


def random_trials(spec: GridSpec) -> list[TrialConfig]:
    """Stage 4: like the search trials; the trainable draws the random genotype from ``seed``."""
    return _setting_trials(spec, "random", spec.random.repeats) if spec.random.enabled else []


EVERY_CONTROL = "every"  # controls.genotypes: [every] runs each setting's every control genotype


def _controls_of(operators: str) -> tuple[str, ...]:
    return control_names(SearchSpace(operators, 1, 1, channels=4, partial_k=1))


def all_control_names() -> tuple[str, ...]:
    """Every control genotype's name over the operator sets, each once, in the sets' order."""
    return tuple(dict.fromkeys(name for ops in OPERATOR_SETS for name in _controls_of(ops)))


def setting_controls(spec: GridSpec, setting: Setting) -> list[str]:
    """The control genotypes a setting runs: the grid's names that its operator set has."""
    own = _controls_of(setting.operators)
    wanted = spec.controls.genotypes
    return list(own) if EVERY_CONTROL in wanted else [name for name in wanted if name in own]


def control_trials(spec: GridSpec) -> list[TrialConfig]:
    """Fixed genotypes per setting × repeat, evaluated like a searched one; the trainable builds the
    genotype from ``control`` (adf_service.genotype.control_genotype)."""
    if not spec.controls.enabled:
        return []
    trials = []
    for repeat in range(spec.controls.repeats):
        for setting in settings(spec):
            for name in setting_controls(spec, setting):
                key = f"controls-{name}-{setting_key(**setting.to_dict())}-r{repeat}"
                trials.append(TrialConfig(
                    stage="controls", trial_key=key, setting=setting, repeat=repeat,
                    seed=trial_seed(spec.seed, key), store=spec.dataset.store,
                    modalities=tuple(spec.dataset.modalities) if spec.dataset.modalities else None,
                    channels=spec.space.channels, partial_k=spec.space.partial_k,
                    evaluation=spec.evaluation.model_dump(), control=name,
                    deterministic=spec.deterministic or None,
                ))
    return trials


def baseline_trials(spec: GridSpec) -> list[TrialConfig]:
    """Stage 1: one late-fusion baseline per modality combo × repeat (thesis §5.2.3)."""
    baselines = spec.baselines
    if not baselines.enabled:
        return []
    trials = []
    for repeat in range(baselines.repeats):
        for combo in baselines.combos:
            name = combo_name(combo)
            key = f"baselines-{name}-r{repeat}"
            trials.append(
                TrialConfig(
                    stage="baselines",
                    trial_key=key,
                    modalities=tuple(combo),
                    combo=name,
                    repeat=repeat,
                    seed=trial_seed(spec.seed, key),
                    store=spec.dataset.store,
                    training=baselines.training.model_dump(),
                    deterministic=spec.deterministic or None,
                )
            )
    return trials


class TransferError(ValueError):
    """A transfer stage that cannot run: no genotype in its source job, or a store without what a genotype fuses."""


def transfer_trials(spec: GridSpec) -> list[TrialConfig]:
    """Transfer (thesis §5.3.2, table 6): the best genotypes of ``transfer.from_job``, each trained from
    scratch ``transfer.repeats`` times on this grid's store with ``transfer.training`` (None: ``evaluation``).

    The genotypes are each setting's best evaluation of a learned search, the settings ranked by the
    source job's ``bohb.select`` (:func:`trials.summary.best_per_setting`), at most ``transfer.genotypes``.
    A trial fuses the modalities its source fused (a source that fused all of its store's: that store's),
    which this store must have, with the layer3 channels of the source's store where that can still be
    read. Keys: ``transfer-<source trial key>-r<repeat>``. Raises TransferError naming what is missing,
    trials.job_report.ReportError for a source without result tables.
    """
    transfer = spec.transfer
    if not transfer.enabled:
        return []
    from trials.job_report import read_job  # the report's reader of a job's tables and spec
    from trials.summary import best_per_setting

    source = read_job(transfer.from_job)
    chosen = best_per_setting(source.rows, by=source.select, limit=transfer.genotypes)
    if not chosen:
        n = sum(1 for r in source.rows if r["stage"] == "evaluation")
        raise TransferError(f"transfer.from_job {transfer.from_job}: no evaluation of a learned search to transfer "
                            f"({n} evaluation rows; failed ones and those of unlearned searches do not count)")
    store = load_manifest(Path(spec.dataset.store))
    problems: list[str] = []
    if FUSION_LAYER not in store.layers:
        problems.append(f"the store {spec.dataset.store} has no {FUSION_LAYER} features, what a fusion network fuses")
    bases = []
    for row in chosen:
        config = TrialConfig.from_json(row["config"], where=f"{transfer.from_job}: {row['trial_key']}")
        modalities = _transferred_modalities(spec, store, row["trial_key"], config, problems)
        bases.append((row, config, modalities))
    if problems:
        raise TransferError("transfer: " + "; ".join(problems))
    training = (transfer.training or spec.evaluation).model_dump()
    trials = []
    for repeat in range(transfer.repeats):
        for row, config, modalities in bases:
            key = f"transfer-{row['trial_key']}-r{repeat}"
            trials.append(TrialConfig(
                stage="transfer", trial_key=key, setting=config.setting, repeat=repeat,
                seed=trial_seed(spec.seed, key), store=spec.dataset.store, modalities=modalities,
                channels=config.channels, genotype=row["genotype"], evaluation=training,
                deterministic=spec.deterministic or None,
                source={"job": row["job"], "trial_key": row["trial_key"], "store": config.store,
                        "test_top1": row["test_top1"]},
            ))
    return trials


def _transferred_modalities(spec: GridSpec, store: Manifest, key: str, source: TrialConfig,
                            problems: list[str]) -> tuple[str, ...] | None:
    """The modalities a transferred genotype fuses on ``store``; what the store lacks goes to ``problems``."""
    try:
        own = load_manifest(Path(source.store))
    except (FeatureStoreError, OSError):
        own = None  # the source's store is gone or on another machine: its channels cannot be compared
    fused = source.modalities or (tuple(own.modalities) if own else None)
    if fused is None:  # unknown: whatever this grid fuses
        return tuple(spec.dataset.modalities) if spec.dataset.modalities else None
    missing = [m for m in fused if m not in store.modalities]
    if missing:
        problems.append(f"{key} fuses {'+'.join(fused)}; the store {spec.dataset.store} has no {', '.join(missing)} "
                        f"(it has {', '.join(store.modalities)})")
    chosen = spec.dataset.modalities
    if chosen is not None and not set(fused) <= set(chosen):
        problems.append(f"{key} fuses {'+'.join(fused)}, more than dataset.modalities {{{', '.join(chosen)}}}")
    if own is not None and FUSION_LAYER in own.layers and FUSION_LAYER in store.layers:
        for m in (m for m in fused if m not in missing and m in own.modalities):
            theirs, ours = own.shape(m, FUSION_LAYER)[0], store.shape(m, FUSION_LAYER)[0]
            if theirs != ours:
                problems.append(f"{key} fused {m} {FUSION_LAYER} features of {theirs} channels (store {source.store}); "
                                f"the store {spec.dataset.store} has {ours}: the genotype's network needs the same "
                                "features (the same backbones)")
    return tuple(fused)


def hyperband_s_max(min_budget: float, max_budget: float, eta: int) -> int:
    """HyperBand's largest bracket, ``floor(log_eta(max/min))``, without a float logarithm (exact for
    integer budgets): hpbandster's, the thesis' BOHB. Ray's HyperBand rounds the logarithm instead."""
    s_max = 0
    while min_budget * eta ** (s_max + 1) <= max_budget:
        s_max += 1
    return s_max


def bohb_samples(min_budget: float, max_budget: float, eta: int, iterations: int) -> int:
    """How many configurations HyperBand samples in ``iterations`` iterations (Li et al. 2017).

    ``s_max = floor(log_eta(max/min))``; iteration ``i`` runs bracket ``s = s_max − (i mod
    (s_max+1))``, which samples ``n = ceil((s_max+1)/(s+1) · eta**s)`` configurations.
    The thesis' BOHB (min 2, max 70, η 3, 10 iterations): s_max = 3, brackets of 27, 12, 6
    and 4 configurations, 137 in all.
    """
    s_max = hyperband_s_max(min_budget, max_budget, eta)
    # Brackets in the order iterations run them; ceil without float rounding. Closed form over
    # the iterations: a grid's count is known before anything is expanded, however large.
    per_bracket = [-(-(s_max + 1) * eta**s // (s + 1)) for s in range(s_max, -1, -1)]
    cycles, rest = divmod(iterations, s_max + 1)
    return cycles * sum(per_bracket) + sum(per_bracket[:rest])


def stage_counts(spec: GridSpec) -> dict[str, int]:
    """Trials per stage, in the order the stages run; 0 for a disabled stage."""
    n_settings = len(settings(spec))
    bohb = spec.bohb
    searches = n_settings * spec.repeats if spec.search.enabled else 0
    return {
        "baselines": len(spec.baselines.combos) * spec.baselines.repeats if spec.baselines.enabled else 0,
        "search": searches,
        "evaluation": searches,
        "random": n_settings * spec.random.repeats if spec.random.enabled else 0,
        "controls": (
            sum(len(setting_controls(spec, s)) for s in settings(spec)) * spec.controls.repeats
            if spec.controls.enabled
            else 0
        ),
        "bohb": (
            (bohb.samples or bohb_samples(bohb.min_epochs, bohb.max_epochs, bohb.eta, bohb.iterations))
            if bohb.enabled
            else 0
        ),
        # At most: the source job may have fewer settings with a learned evaluation.
        "transfer": spec.transfer.genotypes * spec.transfer.repeats if spec.transfer.enabled else 0,
    }


def ray_trial_counts(spec: GridSpec) -> dict[str, int]:
    """Ray Tune trials per stage: an evaluation runs inside its search trial, so it has none."""
    return {stage: n for stage, n in stage_counts(spec).items() if stage != "evaluation"}
