"""`adf-service extract`: videos and split files → feature store (registered on the library's app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from adf_service.cli import USER_ERRORS, _fail, app
from adf_service.console import console, err_console

__all__ = ["extract"]


@app.command()
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
    from adf_service.extract.config import load_extract_config
    from adf_service.extract.index import dataset_index
    from adf_service.extract.pipeline import extract_store

    try:
        index = dataset_index(dataset, videos, splits, split)
        report = extract_store(
            index, load_extract_config(config), out, train_views=train_views, seed=seed, device=device,
            batch_size=batch_size, workers=workers, limit=limit, progress=not quiet,
        )
    except USER_ERRORS as exc:  # every extraction error is a ValueError naming what is wrong
        _fail(exc)
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
