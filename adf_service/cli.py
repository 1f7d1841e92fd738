"""The library's commands: inspect a search space or a genotype, synthesise data, search, evaluate,
train baselines, run the demo, extract features from videos.

Plain functions: ``api/cli.py`` assembles them (with the grid and service commands) into
``adf-service``. Thin: parse, call the library, print. The library (torch, PyAV, OpenCV) is
imported inside each command, so that ``adf-service --help`` does not load it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from adf_service.console import EpochProgress, console, err_console, fail

if TYPE_CHECKING:
    from adf_service.features.store import FeatureStore

__all__ = ["baseline", "demo", "evaluate", "extract", "genotype_show", "search", "space", "synth"]


def space(
    operators: Annotated[str, typer.Option(help="Operator set: S1 or S2.")] = "S2",
    channels: Annotated[int, typer.Option(help="Fusion channels C after the stem.")] = 512,
    inputs: Annotated[int, typer.Option(help="Cell inputs I (1-3).")] = 2,
    cells: Annotated[int, typer.Option(help="Number of cells (1-4).")] = 2,
    partial_k: Annotated[int, typer.Option(help="PC-DARTS K (1 = plain DARTS).")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Operators with exact weight counts, edges per cell, and the supernet's size."""
    from adf_service.inspect_space import summarize_space
    from adf_service.space import SearchSpace, SearchSpaceError

    try:
        summary = summarize_space(SearchSpace(operators, inputs, cells, channels, partial_k))
    except SearchSpaceError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"operators {operators} at C={channels} (conv weights, tables 1–2)")
    table.add_column("operator")
    table.add_column("weights", justify="right")
    for name, count in summary.operators.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"edges per cell M = 4(I−1)+10 = {summary.edges_per_cell}")
    console.print(
        f"supernet (K={partial_k}, {cells} cells, inputs 1024+1024+256, 51 classes): "
        f"{summary.supernet_params:,} weights + {summary.arch_params:,} α/β"
    )


def genotype_show(
    file: Annotated[Path, typer.Argument(help="A genotype JSON file.")],
    dot: Annotated[
        Optional[Path], typer.Option(help="Also write a Graphviz cell diagram (.dot, .png, .svg).")
    ] = None,
    svg: Annotated[
        Optional[Path],
        typer.Option(help="Also draw the cells like thesis fig. 9 with matplotlib (.svg, or .png)."),
    ] = None,
) -> None:
    """Print each cell of a genotype as text (and optionally draw it)."""
    from adf_service.genotype import Genotype, GenotypeError

    if svg is not None:
        from adf_service.diagram import check_diagram_path, save_diagram

        try:
            check_diagram_path(svg)
        except ValueError as exc:
            fail(exc)
    try:
        genotype = Genotype.load(file)
    except GenotypeError as exc:
        fail(exc)
    console.print(genotype.to_text(), markup=False, highlight=False)
    if svg is not None:
        try:
            save_diagram(genotype, svg, title=str(file))
        except OSError as exc:
            fail(f"{svg}: cannot write the diagram: {exc.strerror or exc}")
        console.print(f"diagram written to {svg}", markup=False, highlight=False, soft_wrap=True)
    if dot is not None:
        source = genotype.to_dot()
        if dot.suffix == ".dot":
            dot.write_text(source)
        elif shutil.which("dot") is None:
            fail(ValueError(f"rendering {dot.suffix} needs Graphviz's `dot`; write a .dot file instead"))
        else:
            subprocess.run(["dot", f"-T{dot.suffix[1:]}", "-o", str(dot)], input=source.encode(), check=True)
        console.print(f"diagram written to {dot}")


def synth(
    out: Annotated[Path, typer.Option(help="Directory of the feature store to write.")],
    clips: Annotated[int, typer.Option(help="Clips in all; a quarter go to the test split.")] = 1200,
    classes: Annotated[int, typer.Option(help="Number of classes (object types).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same store.")] = 0,
    layout: Annotated[str, typer.Option(
        help="The label is the type of the object at the moving place ('at'), one cell right of it "
             "('beside'), --reach cells right of it ('reach') or at its place --lag frames later ('lag').",
    )] = "at",
    reach: Annotated[Optional[int], typer.Option(
        help="Layout 'reach': the offset d ≥ 1 in W cells a fusion must bridge; the grid is 2×4×2d "
             "(default 3).", show_default=False,
    )] = None,
    lag: Annotated[Optional[int], typer.Option(
        help="Layout 'lag': the offset L ≥ 1 in T frames a fusion must bridge; the grid is 2L×4×1 "
             "(default 3).", show_default=False,
    )] = None,
    views: Annotated[int, typer.Option(help="Augmented views per training clip.")] = 2,
) -> None:
    """Write the synthetic 'what moves where' feature store (see docs/synthetic-data.md)."""
    from adf_service.errors import USER_ERRORS
    from adf_service.features.synth import generate_synthetic_store

    n_test = clips // 4
    try:
        store = generate_synthetic_store(
            out, n_train=clips - n_test, n_test=n_test, n_classes=classes, seed=seed,
            n_train_views=views, layout=layout, reach=reach, lag=lag,
        )
    except USER_ERRORS as exc:
        fail(exc)
    m = store.manifest
    made = m.provenance["parameters"]
    knob = f" ({made['layout']}={made[made['layout']]})" if made["layout"] in ("reach", "lag") else ""
    console.print(
        f"wrote {out}: {sum(m.splits.values())} clips {dict(m.splits)}, {len(m.classes)} classes, "
        f"modalities {', '.join(m.modalities)}, layout {made['layout']}{knob} on T×H×W "
        f"{'×'.join(map(str, made['spatial']))}"
    )


DeviceOption = Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda, cuda:1, ...")]
PrecisionOption = Annotated[str, typer.Option(help="auto (bf16 autocast on a GPU), fp32 or bf16.")]
ChannelsLastOption = Annotated[str, typer.Option(help="channels_last_3d: auto (on a GPU), on, off.")]
DeterministicOption = Annotated[bool, typer.Option(
    "--deterministic", help="cuDNN deterministic mode and torch's deterministic algorithms (slower on a GPU).")]


def _open_store(path: Path) -> FeatureStore:
    from adf_service.features.store import FeatureStore, FeatureStoreError

    try:
        return FeatureStore.open(path)
    except FeatureStoreError as exc:
        fail(exc)


def search(
    store: Annotated[Path, typer.Argument(help="Feature store directory.")],
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint, genotype, history.")],
    operators: str = "S2",
    inputs: int = 2,
    cells: int = 2,
    channels: int = 512,
    partial_k: int = 4,
    discretization: str = "all",
    epochs: int = 50,
    warmup: int = 5,
    batch_size: int = 64,
    second_order: bool = False,
    seed: int = 0,
    modalities: Annotated[Optional[str], typer.Option(help="Comma-separated; default all.")] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    channels_last: ChannelsLastOption = "auto",
    deterministic: DeterministicOption = False,
) -> None:
    """Run one PC-DARTS search (resumes from OUT/search.ckpt if present)."""
    from adf_service.errors import USER_ERRORS
    from adf_service.features.dataset import ClipSet
    from adf_service.space import SearchSpace
    from adf_service.train import Runtime, SearchConfig, SearchRun, drive

    feature_store = _open_store(store)
    try:
        run = SearchRun(
            SearchSpace(operators, inputs, cells, channels, partial_k),
            ClipSet.of(feature_store, "train", "layer3", modalities.split(",") if modalities else None),
            SearchConfig(
                epochs=epochs, warmup_epochs=warmup, batch_size=batch_size,
                second_order=second_order, discretization=discretization, seed=seed,
            ),
            Runtime(device, precision, channels_last, deterministic),
        )
        out.mkdir(parents=True, exist_ok=True)
        with EpochProgress() as progress:
            progress.start("search", epochs)
            result = drive(
                run, checkpoint=out / "search.ckpt", on_epoch=lambda r: progress.epoch("search", r)
            )
    except USER_ERRORS as exc:
        fail(exc)
    result.genotype.save(out / "genotype.json")
    (out / "history.json").write_text(json.dumps([r.to_dict() for r in result.history], indent=1))
    console.print(result.genotype.to_text(), markup=False, highlight=False)
    console.print(
        f"best val loss {result.best_val_loss:.4f} at epoch {result.best_epoch}; "
        f"genotype written to {out / 'genotype.json'}"
    )


def evaluate(
    store: Annotated[Path, typer.Argument(help="Feature store directory.")],
    genotype: Annotated[Optional[Path], typer.Argument(
        help="Genotype JSON file (not with --weights: the weights file holds its genotype).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory: checkpoint and result (training only).")] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="A trained network (model.pt of `adf-service best --export`): test it on the store's test split, "
             "without training.")] = None,
    channels: int = 512,
    epochs: int = 70,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    channels_last: ChannelsLastOption = "auto",
    deterministic: DeterministicOption = False,
) -> None:
    """Train a genotype's fusion network from scratch and report the best-val epoch's test top-1; or,
    with --weights, test a trained network."""
    from adf_service.errors import USER_ERRORS
    from adf_service.genotype import Genotype
    from adf_service.train import Runtime, TrainConfig, drive, evaluation_run

    runtime = Runtime(device, precision, channels_last, deterministic)
    if weights is not None:
        if genotype is not None:
            fail(ValueError("give a GENOTYPE file or --weights, not both (the weights file holds its genotype)"))
        _test_weights(_open_store(store), weights, batch_size, runtime)
        return
    if genotype is None or out is None:
        fail(ValueError("training needs a GENOTYPE file and --out DIR (or test a trained network with --weights)"))
    feature_store = _open_store(store)
    try:
        run = evaluation_run(
            Genotype.load(genotype), feature_store, channels,
            TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed), runtime,
        )
        out.mkdir(parents=True, exist_ok=True)
        with EpochProgress() as progress:
            progress.start("evaluation", epochs)
            result = drive(
                run, checkpoint=out / "train.ckpt", on_epoch=lambda r: progress.epoch("evaluation", r)
            )
    except USER_ERRORS as exc:
        fail(exc)
    (out / "result.json").write_text(
        json.dumps({"test_top1": result.test_top1, "best_epoch": result.best_epoch, "params": result.params})
    )
    console.print(
        f"test top-1 {result.test_top1:.2f}% (best val epoch {result.best_epoch}), "
        f"fusion parameters {result.params:,}"
    )


def _test_weights(store: FeatureStore, weights: Path, batch_size: int, runtime) -> None:
    """Test a weights file's network on the store's test split (the modalities it was trained on)."""
    import torch

    from adf_service.errors import USER_ERRORS
    from adf_service.features.dataset import ClipSet
    from adf_service.fusion import count_parameters, load_fusion
    from adf_service.train.metrics import evaluate as test

    try:
        network = load_fusion(weights)
        data = torch.load(weights, map_location="cpu", weights_only=True)
        clips = ClipSet.of(store, "test", "layer3", data["info"].get("modalities"))
        if list(clips.channels()) != list(data["in_channels"]):
            raise ValueError(f"{weights}: trained on inputs of {data['in_channels']} channels; the store's "
                             f"{', '.join(clips.modalities)} have {list(clips.channels())}")
        loss, top1 = test(runtime.prepare_model(network), clips, runtime, batch_size)
    except USER_ERRORS as exc:
        fail(exc)
    console.print(f"test top-1 {top1:.2f}% (loss {loss:.4f}) on {len(clips)} test clips, "
                  f"fusion parameters {count_parameters(network):,}")


def baseline(
    store: Annotated[Path, typer.Argument(help="Feature store directory.")],
    modalities: Annotated[str, typer.Option(help="Comma-separated, e.g. rgb,flow.")] = "rgb,flow,pose",
    epochs: int = 70,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> None:
    """Train the late-fusion baseline (layer4, pool, concat, linear) on some modalities."""
    from adf_service.errors import USER_ERRORS
    from adf_service.train import TrainConfig, baseline_run, drive

    feature_store = _open_store(store)
    try:
        run = baseline_run(
            feature_store, modalities.split(","),
            TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
        )
        with EpochProgress() as progress:
            progress.start("baseline", epochs)
            result = drive(run, on_epoch=lambda r: progress.epoch("baseline", r))
    except USER_ERRORS as exc:
        fail(exc)
    console.print(f"baseline {modalities}: test top-1 {result.test_top1:.2f}% (best val epoch {result.best_epoch})")


def _mean_std_text(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "") + f"% (n={n})"


def demo(
    out: Annotated[Path, typer.Option(help="Working directory for the demo.")] = Path("runs/demo"),
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
    seed: int = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Synthetic reach data → 5 searches, 5 random genotypes, all_skip, seven late-fusion baselines → table."""
    from adf_service.demo import DemoSettings, run_demo
    from adf_service.errors import USER_ERRORS
    from adf_service.genotype import Genotype

    settings = DemoSettings(seed=seed)
    try:
        with EpochProgress(quiet=quiet) as progress:
            report = run_demo(out, settings, on_phase_start=progress.start, on_epoch=progress.epoch)
    except USER_ERRORS as exc:
        fail(exc)
    table = Table(title=f"AutoDeepFuse demo: synthetic data, layout {report.layout} (docs/synthetic-data.md); "
                        f"chance {report.chance_top1:.0f}%")
    table.add_column("model")
    table.add_column("test top-1: mean ± std (n)", justify="right")
    table.add_column("best", justify="right")
    for combo, top1 in report.baselines.items():
        reference = combo == "R+F+P"
        table.add_row(f"late fusion {combo}" + (" (baseline)" if reference else ""), f"{top1:.1f}%", "",
                      style="bold" if reference else "dim")
    setting = f"{settings.operators}, {settings.discretization}, I={settings.n_inputs}, C={settings.n_cells}"
    table.add_row(f"control {settings.control}", f"{report.all_skip_top1:.1f}%", "")
    table.add_row(f"random genotypes ({setting})",
                  _mean_std_text(report.random_top1_mean, report.random_top1_std, report.n_random),
                  f"{max(report.random):.1f}%" if report.random else "-")
    table.add_row(f"searched genotypes ({setting})",
                  _mean_std_text(report.searched_top1_mean, report.searched_top1_std, report.n_searched),
                  f"{report.searched_top1:.1f}%" if report.searched_top1 is not None else "-", style="bold")
    err_console.print(table)
    if report.p_searched_gt_random is not None:
        err_console.print(f"searched > random: one-sided Mann-Whitney p = {report.p_searched_gt_random:.3g} "
                          f"(n = {report.n_searched} vs {report.n_random}); unlearned searches: {report.n_unlearned}; "
                          f"search {report.search_seconds:.0f} s, evaluations {report.eval_seconds:.0f} s",
                          highlight=False)
    if report.genotype is not None:
        err_console.print(Genotype.from_dict(report.genotype).to_text(), markup=False, highlight=False)
    summary = report.to_dict()
    summary.pop("history")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(f"full report in {out / 'report.json'}")


def extract(
    dataset: Annotated[str, typer.Option(help="hmdb51 or ucf101: which official split-file layout.")],
    videos: Annotated[Path, typer.Option(help="Directory of the videos, one folder per class.")],
    splits: Annotated[Path, typer.Option(help="Directory of the official split files.")],
    config: Annotated[Path, typer.Option(help="extract.yaml: backbones, checkpoints, flow, pose (docs/data.md).")],
    out: Annotated[Path, typer.Option(help="Directory of the feature store to write.")],
    split: Annotated[int, typer.Option(help="Official split: 1, 2 or 3.")] = 1,
    train_views: Annotated[int, typer.Option(help="Differently sampled views per training clip.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of frame sampling: the same seed writes the same store.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA + bf16 when present), cpu, cuda, cuda:1, ...")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Clip views per backbone forward.")] = 8,
    workers: Annotated[
        Optional[int], typer.Option(help="Threads decoding and computing flow/pose; default 1 on CPU.")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Debug: only the first N clips of each split.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Decode, sample, compute flow and pose, run the frozen backbones: write a feature store.

    Resumes an interrupted run from OUT.partial; clips that fail to decode are listed and left out.
    """
    from adf_service.errors import USER_ERRORS
    from adf_service.extract import dataset_index, extract_store, load_extract_config

    try:
        index = dataset_index(dataset, videos, splits, split)
        report = extract_store(
            index, load_extract_config(config), out, train_views=train_views, seed=seed, device=device,
            batch_size=batch_size, workers=workers, limit=limit, progress=not quiet,
        )
    except USER_ERRORS as exc:  # every extraction error is a ValueError naming what is wrong
        fail(exc)
    if report.failed:
        table = Table(title=f"{len(report.failed)} clip(s) left out of the store")
        table.add_column("clip")
        table.add_column("reason", overflow="fold")
        for failed in report.failed:
            table.add_row(failed.clip_id, failed.reason)
        err_console.print(table)
    manifest = report.manifest
    warning = manifest.provenance.get("WARNING")
    if warning:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    counts = ", ".join(f"{split} {n}" for split, n in manifest.splits.items())
    console.print(
        f"wrote {report.store}: {sum(manifest.splits.values())} clips ({counts}), {manifest.n_train_views} "
        f"views per train clip, modalities {', '.join(manifest.modalities)}; {len(report.extracted)} "
        f"extracted, {len(report.resumed)} resumed, {len(report.failed)} failed, in {report.seconds:.1f} s",
        highlight=False, soft_wrap=True,
    )
