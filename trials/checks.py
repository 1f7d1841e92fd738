"""Checks before launch: what a valid grid still needs of its store, of BOHB's budgets and of the cluster.

A grid that validates (:mod:`trials.spec`) can still be unable to run: its store may lack a
modality it fuses, have too few clips to split, or features the fusion network cannot train on;
BOHB's budgets may leave HyperBand nothing to stop early; a trial may ask for more than any node
has. :func:`launch_problems` finds all of that before anything runs (`adf-service validate` and
`run`, and the service at submit), without Ray: it reads the store's manifest only, and is given
the nodes' resources. Each problem names the grid key to change, with its line in the grid.yaml
when ``lines`` (:func:`trials.spec.parse_grid_with_lines`) are given, and says what the store or
the cluster has and what the grid asks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from adf_service.features.manifest import (
    FUSION_LAYER,
    TRAIN_SPLIT,
    FeatureStoreError,
    Manifest,
    load_manifest,
)
from adf_service.modalities import MODALITIES
from adf_service.train import SearchConfig, TrainConfig
from adf_service.yamldoc import DocumentProblem, Loc, dotted
from trials.expand import ray_trial_counts
from trials.grid_sections import ResourceSpec
from trials.spec import GridSpec

__all__ = [
    "BASELINE_LAYER",
    "FUSION_STAGES",
    "TEST_SPLIT",
    "describe_amounts",
    "describe_nodes",
    "fits",
    "key_line",
    "launch_problems",
    "resource_problems",
    "trial_request",
]

BASELINE_LAYER = "layer4"  # what the late-fusion baselines pool (adf_service.train.fit.baseline_run)
TEST_SPLIT = "test"  # every training is scored on it
FUSION_STAGES = ("search", "random", "controls", "bohb", "transfer")  # their networks fuse FUSION_LAYER
_EPS = 1e-9  # Ray's fractional resources are sums of floats

Found = list[tuple[Loc, str]]
Nodes = Sequence[Mapping[str, float]]


def launch_problems(spec: GridSpec, *, lines: Mapping[Loc, int] | None = None, nodes: Nodes | None = None,
                    store: bool = True) -> list[DocumentProblem]:
    """Every reason ``spec`` cannot run as it stands, in line order; empty when it can.

    Checks the feature store (it exists, or ``dataset.synthetic`` makes it; the modalities, layers,
    splits, clips and classes the grid's stages need; ``store=False`` leaves it out, for a grid
    checked away from its data), BOHB's budgets (a full HyperBand bracket), the number of trials
    (``max_trials``), and, when ``nodes`` (each alive node's total resources, ``{"CPU": 8.0,
    "GPU": 1.0}``) are given, that a trial fits one node (:func:`resource_problems`).
    """
    found = [*(_store_problems(spec) if store else []), *_bohb_problems(spec), *_count_problems(spec)]
    if nodes is not None:
        found += _resource_problems(spec.resources, nodes)
    return _located(found, lines)


def resource_problems(resources: ResourceSpec, nodes: Nodes, *,
                      lines: Mapping[Loc, int] | None = None) -> list[DocumentProblem]:
    """Why a trial fits no alive node (``nodes``: their total resources), as the job's driver will ask.

    A GPU trial on a cluster with no GPU at all is no problem here: it runs on CPUs when the grid
    allows it, else it waits for the GPU node an autoscaling cluster adds (``trials.pending``
    reports it, and ``resources.when_unschedulable`` says how long it waits).
    """
    return _located(_resource_problems(resources, nodes), lines)


def key_line(lines: Mapping[Loc, int] | None, path: Loc | str) -> int | None:
    """The grid.yaml line of ``path`` (a key path, or dotted: ``bohb.batch_sizes[1]``), or for a key
    the file leaves out, of its nearest enclosing key (as :func:`adf_service.yamldoc.explain` does)."""
    if not lines:
        return None
    loc = _loc(path) if isinstance(path, str) else path
    return next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)


def trial_request(resources: ResourceSpec, nodes: Nodes) -> dict[str, float] | None:
    """What a trial asks of one node, ``{"CPU": c, "GPU": g}``, as the driver asks it (trials/pipeline.py):
    no GPU when no node has one and ``allow_cpu_fallback``; None when it asks GPUs of a cluster that
    has none yet and may not fall back: it waits for one, which is no launch problem."""
    asked = {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}
    if asked["GPU"] and not any(node.get("GPU", 0.0) > 0 for node in nodes):
        if not resources.allow_cpu_fallback:
            return None
        asked["GPU"] = 0.0
    return asked


def fits(asked: Mapping[str, float], node: Mapping[str, float]) -> bool:
    """Whether one node with ``node`` resources can hold a trial that asks ``asked``."""
    return all(node.get(name, 0.0) + _EPS >= amount for name, amount in asked.items() if amount > 0)


def describe_amounts(amounts: Mapping[str, float], joiner: str = " / ") -> str:
    """``{"CPU": 2.0, "GPU": 1.0}`` → ``2 CPU / 1 GPU`` (CPU and GPU always, then what else is named)."""
    names = ["CPU", "GPU", *sorted(set(amounts) - {"CPU", "GPU"})]
    return joiner.join(f"{amounts.get(name, 0.0):g} {name}" for name in names)


def describe_nodes(nodes: Iterable[Mapping[str, float]]) -> str:
    """The nodes by their CPUs and GPUs, alike ones counted: ``2 nodes of 8 CPU / 1 GPU, 1 node of …``."""
    shapes = Counter(describe_amounts({"CPU": n.get("CPU", 0.0), "GPU": n.get("GPU", 0.0)}) for n in nodes)
    if not shapes:
        return "no alive node"
    return ", ".join(f"{count} node{'s' * (count != 1)} of {shape}" for shape, count in shapes.most_common())


def _located(found: Found, lines: Mapping[Loc, int] | None) -> list[DocumentProblem]:
    problems = [DocumentProblem(dotted(loc), message, key_line(lines, loc)) for loc, message in found]
    return sorted(problems, key=lambda p: p.line or 0)


def _loc(path: str) -> Loc:
    """``bohb.batch_sizes[1]`` → ``("bohb", "batch_sizes", 1)``."""
    parts = re.findall(r"\[\d+\]|[^.\[\]]+", path)
    return tuple(int(part[1:-1]) if part.startswith("[") else part for part in parts)


# --- the store ----------------------------------------------------------------------------------


def _store_problems(spec: GridSpec) -> Found:
    """The store exists (or the grid generates it) and has what the grid's stages read."""
    path = Path(spec.dataset.store)
    if not path.exists():
        if spec.dataset.synthetic is None:
            message = f"no feature store at {path}, and no dataset.synthetic to generate one"
            return [(("dataset", "store"), message)]
        # The generator makes every modality, both layers, and clips and classes any grid can use.
        return _modality_problems(spec, MODALITIES, f"the synthetic store generated at {path}")
    try:
        manifest = load_manifest(path)
    except FeatureStoreError as exc:
        return [(("dataset", "store"), str(exc))]
    where = f"the store at {path}"
    found = _modality_problems(spec, tuple(manifest.modalities), where)
    return found + _shape_problems(spec, manifest, where)


def _modality_problems(spec: GridSpec, available: tuple[str, ...], where: str) -> Found:
    lacks = f"not in {where} (it has {', '.join(available)})"
    if spec.dataset.modalities is not None:  # the spec has checked the baselines' combos against them
        return [(("dataset", "modalities", i), f"{m!r} {lacks}")
                for i, m in enumerate(spec.dataset.modalities) if m not in available]
    if not spec.baselines.enabled:
        return []
    combos = spec.baselines.combos
    return [(("baselines", "combos", i, j), f"{m!r} {lacks}")
            for i, combo in enumerate(combos) for j, m in enumerate(combo) if m not in available]


def _shape_problems(spec: GridSpec, manifest: Manifest, where: str) -> Found:
    """Layers, splits, classes and clips: what makes every trial of a stage fail at its first epoch."""
    counts = ray_trial_counts(spec)
    fusing = [stage for stage in FUSION_STAGES if counts.get(stage)]
    store = ("dataset", "store")
    found: Found = []
    pooling = ["baselines"] if counts["baselines"] else []
    for layer, stages in ((FUSION_LAYER, fusing), (BASELINE_LAYER, pooling)):
        if stages and layer not in manifest.layers:
            found.append((store, f"{where} has layers {', '.join(manifest.layers)}; {', '.join(stages)} "
                                 f"read {layer} features, which it lacks"))
    mismatch = manifest.fusion_layer_mismatch()
    if mismatch:  # FeatureStore.open refuses such a store whatever the grid reads
        found.append((store, f"{where}: {mismatch}"))
    if len(manifest.classes) < 2:
        found.append((store, f"{where} has {len(manifest.classes)} class ({', '.join(manifest.classes)}): "
                             "classifying needs at least 2"))
    missing = [split for split in (TRAIN_SPLIT, TEST_SPLIT) if split not in manifest.splits]
    if missing:
        splits = ", ".join(f"{name} {n}" for name, n in manifest.splits.items()) or "none"
        found.append((store, f"{where} has no {' and no '.join(missing)} clips (its splits: {splits}): every "
                             f"training learns from {TRAIN_SPLIT} clips and is scored on {TEST_SPLIT} clips"))
        return found
    n_train = manifest.splits[TRAIN_SPLIT]
    held_out = TrainConfig.val_fraction
    fewest = _fewest_clips(1.0 - held_out)
    if n_train < fewest:
        found.append((store, f"{where} has {n_train} {TRAIN_SPLIT} clips; every training splits them "
                             f"{1 - held_out:.0%}/{held_out:.0%} into its own training and validation clips, "
                             f"which needs at least {fewest}"))
    elif FUSION_LAYER in manifest.layers and not mismatch:
        found += _lone_clip_problems(spec, manifest, n_train, counts)
    return found


def _first_part(n_clips: int, fraction: float) -> int:
    """The first part's size when ``n_clips`` clips are split at ``fraction`` (ClipSet.split_fraction)."""
    return int(round(fraction * n_clips))


def _fewest_clips(fraction: float) -> int:
    """The fewest clips a split at ``fraction`` leaves with no empty part."""
    return next(n for n in range(1, 1000) if 0 < _first_part(n, fraction) < n)


def _lone(n_clips: int, batch_size: int) -> bool:
    """Whether batches of ``batch_size`` leave one clip alone in a batch."""
    return batch_size == 1 or n_clips % batch_size == 1


def _lone_clip_problems(spec: GridSpec, manifest: Manifest, n_train: int, counts: Mapping[str, int]) -> Found:
    """With 1×1×1 (T×H×W) fusion features, a batch of one clip gives BatchNorm one value per channel,
    which it cannot train on: the trial fails. Which training batches hold one clip follows from the
    clip counts and the batch sizes alone."""
    if math.prod(manifest.shape(manifest.modalities[0], FUSION_LAYER)[1:]) > 1:
        return []
    trained = _first_part(n_train, 1.0 - TrainConfig.val_fraction)  # an evaluation's training clips
    transfer_training = spec.transfer.training if counts["transfer"] else None
    batches: list[tuple[Loc, int]] = []
    evaluated = counts["search"] or counts["random"] or counts["controls"]  # trained with `evaluation`
    if evaluated or (counts["transfer"] and transfer_training is None):
        batches.append((("evaluation", "batch_size"), spec.evaluation.batch_size))
    if transfer_training is not None:
        batches.append((("transfer", "training", "batch_size"), transfer_training.batch_size))
    if counts["bohb"]:
        batches += [(("bohb", "batch_sizes", i), size) for i, size in enumerate(spec.bohb.batch_sizes)]
    why = (f"the store's {FUSION_LAYER} features are 1×1×1 (T×H×W), so a batch of one clip gives BatchNorm "
           "one value per channel, which it cannot train on")
    found = [(key, f"{why}: {trained} training clips in batches of {size} leave one alone; "
                   "choose another size") for key, size in batches if _lone(trained, size)]
    if counts["search"] and _search_has_lone_batch(spec, n_train):
        found.append((("search", "batch_size"), f"{why}: the search's halves of {n_train} {TRAIN_SPLIT} "
                                                f"clips in batches of {spec.search.batch_size} leave one "
                                                "alone; choose another size"))
    return found


def _search_has_lone_batch(spec: GridSpec, n_train: int) -> bool:
    """A search trains w on one half and α on the other, batch by batch in step (SearchRun.step_epoch):
    every w batch during the α warm-up, then as many pairs as the shorter half has batches."""
    s = spec.search
    w = _first_part(n_train, 1.0 - SearchConfig.arch_fraction)
    arch = n_train - w
    w_batches, arch_batches = math.ceil(w / s.batch_size), math.ceil(arch / s.batch_size)
    every_w = s.warmup_epochs > 0 or w_batches <= arch_batches
    every_arch = s.warmup_epochs < s.epochs and arch_batches <= w_batches
    return (every_w and _lone(w, s.batch_size)) or (every_arch and _lone(arch, s.batch_size))


# --- BOHB, trial count, resources ---------------------------------------------------------------


def _bohb_problems(spec: GridSpec) -> Found:
    """HyperBand (trials/bohb.py) counts budgets in units of ``min_epochs`` up to ``max_epochs //
    min_epochs``; a bracket that stops configurations early needs that to reach ``eta``. Below it,
    every bracket but the one without stops is too small and skipped: each configuration trains
    ``max_epochs`` epochs, and BOHB is a random search."""
    b = spec.bohb
    units = b.max_epochs // b.min_epochs
    if not b.enabled or units >= b.eta:
        return []
    return [(("bohb", "max_epochs"),
             f"budgets from min_epochs {b.min_epochs} to max_epochs {b.max_epochs} with eta {b.eta} give "
             f"HyperBand no full bracket ({b.max_epochs} // {b.min_epochs} = {units} budget units, fewer "
             f"than eta): every configuration would train {b.max_epochs} epochs, a random search; make "
             f"max_epochs at least eta × min_epochs = {b.eta * b.min_epochs}, or lower eta or min_epochs")]


def _count_problems(spec: GridSpec) -> Found:
    """``max_trials`` holds for a spec changed after it validated (``model_copy`` skips the validators)."""
    trials = sum(ray_trial_counts(spec).values())
    if trials <= spec.max_trials:
        return []
    return [(("max_trials",), f"the grid makes {trials:,} Ray trials, more than max_trials "
                              f"{spec.max_trials:,}: lower repeats or the axes, or raise max_trials")]


def _resource_problems(resources: ResourceSpec, nodes: Nodes) -> Found:
    asked = trial_request(resources, nodes)
    if asked is None or any(fits(asked, node) for node in nodes):
        return []
    short = [name for name in ("GPU", "CPU") if not any(fits({name: asked[name]}, node) for node in nodes)]
    key = "cpus_per_trial" if short == ["CPU"] else "gpus_per_trial"
    lacks = f"no alive node has {asked[short[0]]:g} {short[0]}" if short else "no alive node has both at once"
    on_cpus = " (on CPUs: no node has a GPU, and allow_cpu_fallback is true)" \
        if resources.gpus_per_trial and not asked["GPU"] else ""
    return [(("resources", key), f"a trial asks for {describe_amounts(asked, ' and ')} on one node{on_cpus}, "
                                 f"and {lacks}: the cluster has {describe_nodes(nodes)}")]
