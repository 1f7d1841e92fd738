"""`adf-service results | best | report | compare`: what a job found, from the service or from a job's directory.

Plain functions, like ``api/client_cli.py`` (whose ``--server``/``--token`` options and connection they
share); ``api/cli.py`` assembles them. ``best``, ``report`` and ``compare`` also read a job's directory
``<storage>/<job id>`` (a path or a URI) without a service.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from adf_service.console import console, err_console, fail
from api.client_cli import (
    JobArgument,
    JsonOption,
    ServerOption,
    TokenOption,
    _count,
    _pct,
    _service,
    _setting,
)
from trials.results import STAGES

__all__ = ["best", "compare", "report", "results"]


def results(
    job: JobArgument,
    format: Annotated[str, typer.Option(
        "--format", help="json (a table, or the rows with -o), csv, or parquet (needs -o).")] = "json",
    stage: Annotated[Optional[str], typer.Option(help=f"Only this stage: {', '.join(STAGES)}.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Write the rows to this file ('-': stdout) in --format.")] = None,
    per_epoch: Annotated[bool, typer.Option(
        "--per-epoch", help="Every trial-epoch instead (train/val loss, val/test top-1, α/β entropy, lr): "
                            "one row per trial and epoch.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Every result row of a job (or of one stage), or with --per-epoch every trial-epoch: a table,
    JSON, CSV or Parquet."""
    if format not in ("json", "csv", "parquet"):
        fail(f"--format {format!r}: choose json, csv or parquet")
    if format == "parquet" and (output is None or str(output) == "-"):
        fail("--format parquet writes a binary file: name it with -o FILE")
    with _service(server, token) as client:
        fetch = client.epochs if per_epoch else client.results
        answer = fetch(job, format=format, stage=stage)
    if format == "json":
        if output is None:
            (_print_epochs if per_epoch else _print_rows)(job, answer)
            return
        answer = (json.dumps(answer, indent=2) + "\n").encode()
    if output is None or str(output) == "-":
        typer.echo(answer.decode(), nl=False)
        return
    try:
        output.write_bytes(answer)
    except OSError as exc:
        fail(f"{output}: cannot write the results: {exc.strerror}")
    err_console.print(f"wrote {output} ({len(answer):,} bytes, {format})", highlight=False)


def _print_rows(job: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"job {job}: {len(rows)} result rows")
    for column in ("stage", "trial", "setting", "status"):
        table.add_column(column)
    for column in ("test top-1", "val loss", "fusion params"):
        table.add_column(column, justify="right")
    for r in rows:
        loss = "-" if r["val_loss"] is None else f"{r['val_loss']:.3f}"
        table.add_row(r["stage"], r["trial_id"], _setting(r), r["status"], _pct(r["test_top1"]), loss,
                      _count(r["fusion_params"]))
    console.print(table)


def _print_epochs(job: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"job {job}: {len(rows)} trial-epochs")
    for column in ("stage", "trial"):
        table.add_column(column)
    for column in ("epoch", "train loss", "val loss", "val top-1", "test top-1", "α entropy"):
        table.add_column(column, justify="right")

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for r in rows:
        table.add_row(r["stage"], r["trial_key"], f"{r['epoch']}/{r['epochs']}", num(r["train_loss"]),
                      num(r["val_loss"]), _pct(r["val_top1"]), _pct(r["test_top1"]), num(r["alpha_entropy"]))
    console.print(table)


def best(
    job: Annotated[str, typer.Argument(metavar="JOB", help=(
        "A job id of the service, or a job's directory <storage>/<job id> (a path or a URI)."))],
    as_json: JsonOption = False,
    export: Annotated[Optional[Path], typer.Option(
        "--export", metavar="DIR", help="Also write genotype.json, model.pt (the trained weights: "
        "adf_service.fusion.load_fusion, `adf-service evaluate --weights`) and metrics.json into DIR.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """A job's best evaluated genotype (highest test top-1): its cells, its metrics, and BOHB's best config."""
    from adf_service.genotype import Genotype, GenotypeError

    if _is_job_dir(job):
        found, files = _local_best(job, export is not None)
    else:
        with _service(server, token) as client:
            found = client.best(job)
            files = client.best_export(job) if export is not None else {}
    if export is not None:
        try:
            export.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (export / name).write_bytes(data)
        except OSError as exc:
            fail(f"{export}: cannot write the export: {exc.strerror}")
        err_console.print(f"wrote {', '.join(files)} into {export}", highlight=False)
    if as_json:
        print(json.dumps(found))
        return
    t = found["trial"]
    console.print(f"job {found['job']}: best genotype from trial {t['trial_id']} ({_setting(t)})", highlight=False)
    try:
        console.print(Genotype.from_dict(found["genotype"]).to_text(), markup=False, highlight=False)
    except GenotypeError:  # a genotype format this client does not know: show it as it came
        console.print_json(data=found["genotype"])
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in (
        ("test top-1", _pct(t["test_top1"])), ("val top-1", _pct(t["val_top1"])),
        ("val loss", "-" if t["val_loss"] is None else f"{t['val_loss']:.4f}"),
        ("best epoch", "-" if t["best_epoch"] is None else str(t["best_epoch"])),
        ("fusion params", _count(t["fusion_params"])), ("total params", _count(t["total_params"])),
        ("wall time", "-" if t["wall_seconds"] is None else f"{t['wall_seconds']:.1f} s"),
        ("device", t["device"] or "-"),
    ):
        metrics.add_row(name, value)
    console.print(metrics)
    bohb = found["bohb"]
    if bohb is None:
        console.print("BOHB: did not run in this job")
        return
    loss = "-" if bohb["val_loss"] is None else f"{bohb['val_loss']:.4f}"
    console.print(f"BOHB's best configuration: trial {bohb['trial_id']}, val loss {loss}, "
                  f"test top-1 {_pct(bohb['test_top1'])}", highlight=False)
    config = Table()
    config.add_column("hyperparameter")
    config.add_column("value", justify="right")
    for name, value in bohb["config"].items():
        config.add_row(name, "-" if value is None else str(value))
    console.print(config)


# --- reports and comparisons: a job's directory, or a job of the service ---------------------------


def _local_best(job: str, export: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
    """What ``/best`` answers and the export's files, for a job directory."""
    from trials.export import ExportError, best_export
    from trials.job_report import ReportError, read_job
    from trials.results import best_of_job

    try:
        results = read_job(job)
        found = best_of_job(results.job, results.rows)
        if found is None:
            raise ExportError(f"{job}: no succeeded evaluation of a learned search")
        files = best_export(results) if export else {}
    except (ReportError, ExportError) as exc:
        fail(exc)
    return found, files


def _is_job_dir(job: str) -> bool:
    """A job directory: a URI, a path with a directory separator or one that exists (the report is made
    here); else a job id of the service (ids have no separator)."""
    return "://" in job or "/" in job or os.sep in job or Path(job).is_dir()


def report(
    job: Annotated[str, typer.Argument(metavar="JOB", help=(
        "A finished job: its directory <storage>/<job id> (a path or a URI), or a job id of the service."))],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Where the report goes; default: a job directory's report/, a service job's "
                            "./<job id>-report.html.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """A finished job's report: report.html (tables, figures, genotype diagrams; self-contained), and for
    a job directory also report.md, a CSV per table (thesis tables 3, 4, 5, operator choice) and the
    figures as PNG and SVG."""
    if not _is_job_dir(job):
        with _service(server, token) as client:
            page = client.report(job)
        target = (out / "report.html") if out is not None else Path(f"{job}-report.html")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(page)
        except OSError as exc:
            fail(f"{target}: cannot write the report: {exc.strerror}")
        console.print(f"wrote {target} ({len(page):,} bytes)", markup=False, highlight=False)
        return
    from trials.job_report import ReportError, write_report

    try:
        written = write_report(job, out)
    except ReportError as exc:
        fail(exc)
    html = next(w for w in written if w.endswith("report.html"))
    console.print(f"wrote {html}, {written[0]} and {len(written) - 2} tables and figures beside them",
                  markup=False, highlight=False)


def compare(
    jobs: Annotated[list[str], typer.Argument(metavar="JOB...", help=(
        "Two or more jobs: job directories (paths or URIs) or job ids of the service (not mixed)."))],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write compare.md, compare.csv and compare.html (the figure overlaid) here.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Jobs side by side: per setting and group of genotypes (searched, random, controls; baselines per
    combo), each job's test top-1 n, mean ± std and best."""
    from trials.compare import MAX_JOBS, compare_html, compare_section
    from trials.report import format_cell, render_csv, render_markdown

    if not 1 <= len(jobs) <= MAX_JOBS:
        fail(f"compare: name 1 to {MAX_JOBS} jobs, got {len(jobs)}")
    local = [_is_job_dir(j) for j in jobs]
    if any(local) and not all(local):
        fail("compare: give job directories or job ids of the service, not both")
    rows: dict[str, list[dict[str, Any]]] = {}
    if all(local):
        from trials.job_report import ReportError, read_job

        for job in jobs:
            try:
                found = read_job(job)
            except ReportError as exc:
                fail(exc)
            rows[found.job if found.job not in rows else job] = found.rows
    else:
        with _service(server, token) as client:
            for job in jobs:
                rows[job] = client.results(job)
    section = compare_section(rows)
    table = Table(title=section.title)
    for column in section.columns:
        table.add_column(column.header, justify="right" if column.kind != "text" else "left")
    for row in section.rows:
        table.add_row(*(format_cell(c, row) for c in section.columns))
    console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(render_markdown(section))
        (out / "compare.csv").write_text(render_csv(section))
        (out / "compare.html").write_text(compare_html(rows))
        console.print(f"wrote {out / 'compare.html'}, compare.md and compare.csv", markup=False, highlight=False)
