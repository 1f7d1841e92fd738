"""`adf-service run` and `adf-service validate`: the grid commands, added to the library's CLI.

The console script points here so that the library CLI stays free of Ray; the commands
below import Ray only when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from adf_service.cli import _fail, app
from adf_service.console import console, err_console
from trials.spec import GridSpecError, load_grid

__all__ = ["app"]


def _stage_counts_table(counts: dict[str, int]) -> Table:
    table = Table(title="trials per stage")
    table.add_column("stage")
    table.add_column("trials", justify="right")
    for stage, n in counts.items():
        table.add_row(stage, str(n))
    return table


@app.command()
def validate(grid: Annotated[Path, typer.Argument(help="A grid.yaml file.")]) -> None:
    """Check a grid.yaml without running it; print how many trials each stage would make."""
    from trials.expand import stage_counts

    try:
        spec = load_grid(grid)
    except GridSpecError as exc:
        _fail(exc)
    console.print(f"{grid}: valid grid {spec.name!r}")
    console.print(_stage_counts_table(stage_counts(spec)))


@app.command()
def run(
    grid: Annotated[Path, typer.Argument(help="A grid.yaml file.")],
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address; default: a local Ray.")] = None,
    job_id: Annotated[Optional[str], typer.Option(help="Job name under the storage path.")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Resume the job with this id.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Run every stage of a grid on Ray Tune and write the Parquet result tables."""
    import ray

    from trials.dataset import ensure_dataset
    from trials.pipeline import ResourceError, run_grid

    try:
        spec = load_grid(grid)
        ensure_dataset(spec)
    except (GridSpecError, ValueError) as exc:
        _fail(exc)
    context = ray.init(address=address, include_dashboard=None, log_to_driver=False)
    try:
        if context.dashboard_url:
            err_console.print(f"Ray dashboard: http://{context.dashboard_url}")
        try:
            outcome = run_grid(spec, job_id=resume or job_id, resume=resume is not None, show_progress=not quiet)
        except (ResourceError, FileNotFoundError, FileExistsError, ValueError) as exc:
            _fail(exc)
    finally:
        ray.shutdown()
    table = Table(title=f"job {outcome.job_id}")
    for column in ("stage", "succeeded", "failed", "table"):
        table.add_column(column)
    for stage, path in outcome.tables.items():
        c = outcome.counts.get(stage, {"succeeded": 0, "failed": 0})
        table.add_row(stage, str(c["succeeded"]), str(c["failed"]), str(path))
    console.print(table)


__all__ += ["run", "validate"]


@app.command("run-job", hidden=True)
def run_job(
    job_id: Annotated[str, typer.Argument(help="The service's job id.")],
    resume: Annotated[bool, typer.Option(help="Resume the job from its storage.")] = False,
) -> None:
    """A Ray job's driver, started by the service: the spec comes in $ADF_JOB_SPEC (JSON)."""
    import json
    import os

    import ray

    from trials.dataset import ensure_dataset
    from trials.pipeline import run_grid
    from trials.spec import validate_grid
    from trials.storage import JobStorage

    text = os.environ.get("ADF_JOB_SPEC")
    if not text:
        _fail(ValueError("run-job: $ADF_JOB_SPEC is not set (the service passes the job's spec there)"))
    try:
        spec = validate_grid(json.loads(text), source=f"job {job_id}")
        ensure_dataset(spec)
    except (GridSpecError, ValueError) as exc:
        _fail(exc)
    # A job whose driver died before Tune wrote its first state starts over.
    resume = resume and JobStorage.of(spec.storage, job_id).exists("tuner.pkl")
    ray.init(log_to_driver=False)  # inside a Ray job: the job's cluster
    try:
        outcome = run_grid(spec, job_id=job_id, resume=resume, show_progress=False)
    finally:
        ray.shutdown()
    console.print(json.dumps({"job": outcome.job_id, "counts": outcome.counts, "tables": outcome.tables}))


__all__ += ["run_job"]
