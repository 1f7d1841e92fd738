"""The demo: searched vs random vs a control vs late fusion on the synthetic benchmark where the search
has something to find.

Generate the synthetic store (layout ``reach``, d = 3: the label is the object 3 cells right
of the mover; docs/synthetic-data.md) → a few PC-DARTS searches (S1, topk, I = 1, one cell,
K = 1), each genotype trained from scratch → as many random genotypes, trained the same way →
the ``all_skip`` control → the seven late-fusion baselines (R, F, P, R+F, R+P, F+P, R+F+P;
thesis §5.2.3) → compare: mean ± std over the repeats, searched vs random one-sided
Mann–Whitney p (adf_service/stats.py). A search whose supernet did not learn is counted in
``n_unlearned`` and never as a searched result. Sized for 2 CPU cores in under 10 minutes:
5 searches and 5 random genotypes (the grid examples/grid-reach.yaml runs 6 of each).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adf_service.features.dataset import ClipSet
from adf_service.features.synth import generate_synthetic_store
from adf_service.genotype import Genotype, control_genotype, random_genotype
from adf_service.modalities import BASELINE_COMBOS, combo_name
from adf_service.space import SearchSpace
from adf_service.stats import compare
from adf_service.train import (
    EpochRecord,
    Runtime,
    SearchConfig,
    SearchRun,
    TrainConfig,
    baseline_run,
    drive,
    evaluation_run,
)

__all__ = ["DemoReport", "DemoSettings", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Small enough for 2 CPU cores in under 10 minutes; thesis values where they fit."""

    n_train: int = 1575
    n_test: int = 525  # 2,100 clips: 900 did not learn reach 3 (issue 12)
    n_classes: int = 4
    seed: int = 0
    layout: str = "reach"  # where operator choice matters (docs/synthetic-data.md, "The reach family")
    reach: int | None = 3
    operators: str = "S1"  # dil_conv and 3×3×3 convs: what reaches sideways
    discretization: str = "topk"
    n_inputs: int = 1  # a sparse setting: a random genotype has the reach about half the time
    n_cells: int = 1
    channels: int = 16  # the thesis' 512 is far beyond 2 CPU cores
    partial_k: int = 1  # K = 4 at 16 channels (4 through each mixed op) did not learn (issue 12)
    batch_size: int = 32
    search_epochs: int = 15
    warmup_epochs: int = 3
    eval_epochs: int = 15
    baseline_epochs: int = 15
    # The thesis' 2e-3 / 3e-4 suit 50 epochs of ~40 steps; a search of a few epochs of
    # ~25 steps needs larger steps to move at all (measured: 2e-3 stays at chance).
    lr: float = 0.1
    arch_lr: float = 3e-3
    n_searches: int = 5
    n_random: int = 5
    control: str = "all_skip"

    def space(self) -> SearchSpace:
        return SearchSpace(self.operators, self.n_inputs, self.n_cells, self.channels, self.partial_k)


@dataclass
class DemoReport:
    settings: DemoSettings
    layout: str
    baseline_top1: float  # late fusion R+F+P
    baselines: dict[str, float]  # combo (R, F, P, R+F, ...) → test top-1 (%)
    searched: list[float]  # test top-1 of each learned search's genotype
    random: list[float]  # test top-1 of each random genotype
    searched_top1: float | None  # the best learned search (the thesis' number); None if none learned
    searched_top1_mean: float | None
    searched_top1_std: float | None
    random_top1: float  # mean over the random genotypes
    random_top1_mean: float
    random_top1_std: float | None
    all_skip_top1: float  # the control genotype's (settings.control)
    n_searched: int
    n_random: int
    n_unlearned: int  # searches whose supernet never rose clearly above chance: not counted
    p_searched_gt_random: float | None  # one-sided Mann–Whitney U
    chance_top1: float
    fusion_params: int | None  # the best searched genotype's network
    baseline_params: int
    search_seconds: float
    eval_seconds: float
    baseline_seconds: float  # per baseline
    genotype: dict[str, Any] | None  # the best learned search's
    device: str
    store: str
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PhaseCallback = Callable[[str, EpochRecord | None], None]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def run_demo(
    out: Path,
    settings: DemoSettings = DemoSettings(),
    on_phase_start: Callable[[str, int], None] | None = None,
    on_epoch: PhaseCallback | None = None,
    runtime: Runtime = Runtime(),
) -> DemoReport:
    """Run the demo under ``out``; ``on_epoch(phase, record)`` reports each epoch done.

    Phases: synthetic data, searches, evaluations (searched, random, control), baselines.
    ``record`` is None for the data phase.
    """
    out.mkdir(parents=True, exist_ok=True)

    def phase(name: str, epochs: int) -> Callable[[EpochRecord], None]:
        if on_phase_start:
            on_phase_start(name, epochs)
        return lambda record: on_epoch(name, record) if on_epoch else None

    s = settings
    phase("synthetic data", 1)
    store = generate_synthetic_store(
        out / "store", n_train=s.n_train, n_test=s.n_test, n_classes=s.n_classes, seed=s.seed,
        layout=s.layout, reach=s.reach, overwrite=True,
    )
    if on_epoch:
        on_epoch("synthetic data", None)

    def train_config(epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=s.batch_size, lr=s.lr, seed=seed)

    started = time.perf_counter()
    on_search = phase("searches", s.n_searches * s.search_epochs)
    found = []
    for i in range(s.n_searches):
        config = SearchConfig(epochs=s.search_epochs, batch_size=s.batch_size, lr=s.lr, arch_lr=s.arch_lr,
                              warmup_epochs=s.warmup_epochs, discretization=s.discretization, seed=s.seed + i)
        found.append(drive(SearchRun(s.space(), ClipSet.of(store, "train", "layer3"), config, runtime),
                           on_epoch=on_search))
    search_seconds = time.perf_counter() - started
    learned = [f for f in found if f.learned]

    started = time.perf_counter()
    rng = random.Random(s.seed)
    genotypes: list[tuple[str, Genotype]] = [("searched", f.genotype) for f in learned]
    genotypes += [("random", random_genotype(s.space(), s.discretization, rng)) for _ in range(s.n_random)]
    genotypes.append(("control", control_genotype(s.space(), s.discretization, s.control)))
    on_eval = phase("evaluations", len(genotypes) * s.eval_epochs)
    trained = [(kind, genotype, drive(evaluation_run(genotype, store, s.channels,
                                                     train_config(s.eval_epochs, s.seed + i), runtime),
                                      on_epoch=on_eval))
               for i, (kind, genotype) in enumerate(genotypes)]
    eval_seconds = time.perf_counter() - started
    searched = [r.test_top1 for kind, _, r in trained if kind == "searched"]
    randoms = [r.test_top1 for kind, _, r in trained if kind == "random"]
    best = max(((g, r) for kind, g, r in trained if kind == "searched"), key=lambda gr: gr[1].test_top1,
               default=(None, None))

    started = time.perf_counter()
    on_baseline = phase("baselines", len(BASELINE_COMBOS) * s.baseline_epochs)
    baselines = {}
    for modalities in BASELINE_COMBOS:
        run = baseline_run(store, modalities, train_config(s.baseline_epochs, s.seed), runtime)
        baselines[combo_name(modalities)] = drive(run, on_epoch=on_baseline)
    late = baselines["R+F+P"]
    baseline_seconds = (time.perf_counter() - started) / len(BASELINE_COMBOS)

    searched_mean, searched_std = _mean_std(searched)
    random_mean, random_std = _mean_std(randoms)
    if best[0] is not None:
        best[0].save(out / "genotype.json")
    return DemoReport(
        settings=s,
        layout=f"{s.layout}{s.reach if s.layout == 'reach' else ''}",
        baseline_top1=late.test_top1,
        baselines={name: result.test_top1 for name, result in baselines.items()},
        searched=searched,
        random=randoms,
        searched_top1=max(searched) if searched else None,
        searched_top1_mean=searched_mean,
        searched_top1_std=searched_std,
        random_top1=random_mean,
        random_top1_mean=random_mean,
        random_top1_std=random_std,
        all_skip_top1=trained[-1][2].test_top1,
        n_searched=len(searched),
        n_random=len(randoms),
        n_unlearned=len(found) - len(learned),
        p_searched_gt_random=compare(searched, randoms).p_value if searched and randoms else None,
        chance_top1=100.0 / s.n_classes,
        fusion_params=best[1].params if best[1] else None,
        baseline_params=late.params,
        search_seconds=search_seconds,
        eval_seconds=eval_seconds,
        baseline_seconds=baseline_seconds,
        genotype=best[0].to_dict() if best[0] is not None else None,
        device=runtime.describe(),
        store=str(out / "store"),
        history={
            "searches": [[r.to_dict() for r in f.history] for f in found],
            "baseline": [r.to_dict() for r in late.history],
        },
    )
