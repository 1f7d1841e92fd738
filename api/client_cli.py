"""`adf-service submit | list | status | cancel | resume | results | best`: the REST service's client.

Plain functions: ``api/cli.py`` assembles them into ``adf-service``. Thin: resolve the server
and token, call :class:`api.client.ServiceClient`, print. Every command takes ``--server``
and ``--token``; without them the client reads ``ADF_SERVER`` / ``ADF_TOKEN``, then the
client config file, then uses http://127.0.0.1:8000 and no token.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from adf_service.console import console, err_console, fail, progress_bar
from api.status import ENDED_STATUSES, JOB_STATUSES
from trials.results import STAGES

if TYPE_CHECKING:
    from api.client import ServiceClient

__all__ = ["best", "cancel", "compare", "follow_job", "list_", "print_summary", "report", "results", "resume", "status",
           "submit"]

POLL_SECONDS = 1.0

ServerOption = Annotated[Optional[str], typer.Option(
    "--server", metavar="URL", show_default=False,
    help="The service's URL. Precedence: this flag, then ADF_SERVER, then `server` in the client config "
         "file ($ADF_CLIENT_CONFIG, else ~/.config/adf-service/client.toml), then http://127.0.0.1:8000.")]
TokenOption = Annotated[Optional[str], typer.Option(
    "--token", metavar="TOKEN", show_default=False,
    help="Bearer token (`adf-service token create` on the server). Precedence: this flag, then ADF_TOKEN, "
         "then `token` in the client config file, then none.")]
JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="A job id (see `adf-service list`).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]


@contextmanager
def _service(server: str | None, token: str | None) -> Iterator[ServiceClient]:
    from api.client import ClientConfigError, ServiceClient, ServiceError, resolve_connection

    try:
        connection = resolve_connection(server, token)
    except ClientConfigError as exc:
        fail(exc)
    client = ServiceClient.from_connection(connection)
    try:
        yield client
    except ServiceError as exc:
        fail(exc)
    finally:
        client.close()


def _when(iso: str | None) -> str:
    return "-" if not iso else iso[:19].replace("T", " ")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _done(job: dict) -> str:
    done = sum(p["succeeded"] + p["failed"] for p in job["progress"].values())
    return f"{done}/{job['n_trials']}"


def _stages(job: dict) -> list[tuple[str, dict]]:
    """The job's progress per stage, in the order the stages run."""
    order = {stage: i for i, stage in enumerate(STAGES)}
    return sorted(job["progress"].items(), key=lambda item: order.get(item[0], len(order)))


def _stage_table(job: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("stage")
    for name in ("trials", "succeeded", "failed", "running", "pending"):
        table.add_column(name, justify="right")
    table.add_column("best test top-1", justify="right")
    unlearned = any(p.get("unlearned") for _, p in _stages(job))
    if unlearned:  # searches whose supernet did not learn: their genotypes are no searched result
        table.add_column("unlearned", justify="right")
    for stage, p in _stages(job):
        cells = [stage, str(p["total"]), str(p["succeeded"]), str(p["failed"]), str(p["running"]),
                 str(p["pending"]), _pct(p["best_test_top1"])]
        table.add_row(*cells, *([str(p.get("unlearned") or 0)] if unlearned else []))
    return table


# --- submit and follow --------------------------------------------------------------------


def follow_job(client: ServiceClient, job: dict) -> dict:
    """Poll the job until it ends, with a bar per stage (done/total, running, best) and one for all."""
    bars = progress_bar()
    tasks: dict[str, int] = {}
    with bars:
        overall = bars.add_task("all trials", total=job["n_trials"], status=job["status"])
        while True:
            stages = job["progress"]
            for stage, p in _stages(job):
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=p["total"], status="")
                status = f"running {p['running']}"
                if p["failed"]:
                    status += f"  failed {p['failed']}"
                if p["best_test_top1"] is not None:
                    status += f"  best test {p['best_test_top1']:.1f}%"
                bars.update(tasks[stage], total=p["total"], completed=p["succeeded"] + p["failed"], status=status)
            done = sum(p["succeeded"] + p["failed"] for p in stages.values())
            total = max(job["n_trials"], sum(p["total"] for p in stages.values()))
            bars.update(overall, total=total, completed=done, status=job["status"])
            if job["status"] in ENDED_STATUSES:
                return job
            time.sleep(POLL_SECONDS)
            job = client.job(job["id"])


def print_summary(client: ServiceClient, job: dict) -> None:
    """The job's progress per stage; after a success, its best genotype's trial, top-1 and size."""
    from api.client import ServiceError

    console.print(_stage_table(job, f"job {job['id']} {job['name']!r}: {job['status']}"))
    if job["status"] != "succeeded":
        return
    try:
        best = client.best(job["id"])
    except ServiceError as exc:
        if exc.status != 409:  # 409: no evaluated genotype (e.g. a baselines-only grid)
            raise
        return
    t = best["trial"]
    params = f"{_count(t['fusion_params'])} fusion params"
    if t["total_params"] is not None:
        params += f" ({t['total_params']:,} in all)"
    console.print(f"best genotype: trial {t['trial_id']} ({_setting(t)}), test top-1 {_pct(t['test_top1'])}, "
                  f"{params}; `adf-service best {job['id']}` shows its cells", highlight=False)


def submit(
    grid: Annotated[Path, typer.Argument(metavar="GRID", help="A grid.yaml file; the server validates it.")],
    wait: Annotated[bool, typer.Option(
        "--wait", help="Follow the job to its end: progress bars, then a summary; exit 1 unless it succeeded.")
    ] = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a grid to the service as a new job; print its id and URL."""
    try:
        text = grid.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{grid}: cannot read the grid: {getattr(exc, 'strerror', None) or exc}")
    with _service(server, token) as client:
        job = client.submit(text, source=str(grid))
        if not as_json:
            console.print(f"submitted job {job['id']} ({job['name']!r}, {job['n_trials']} trials): "
                          f"{client.job_url(job['id'])}", highlight=False, soft_wrap=True)
        if not wait:
            if as_json:
                print(json.dumps(job))
            return
        try:
            job = client.job(job["id"]) if as_json else follow_job(client, job)
            while job["status"] not in ENDED_STATUSES:
                time.sleep(POLL_SECONDS)
                job = client.job(job["id"])
        except KeyboardInterrupt:
            err_console.print(f"stopped waiting: job {job['id']} keeps running on the server. Follow it with "
                              f"`adf-service status {job['id']}`, stop it with `adf-service cancel {job['id']}`",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        if as_json:
            print(json.dumps(job))
        else:
            print_summary(client, job)
    if job["status"] != "succeeded":
        err_console.print(Text.assemble((f"job {job['id']} {job['status']}", "bold red"),
                                        f": {job['error'] or 'no error recorded'}"), soft_wrap=True)
        raise typer.Exit(1)


# --- jobs ---------------------------------------------------------------------------------


def list_(
    status: Annotated[Optional[str], typer.Option(
        help=f"Only jobs in this status: {', '.join(JOB_STATUSES)}.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs (1-500).")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many of the newest jobs first.")] = 0,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Your jobs on the service (an admin's: everyone's), newest first."""
    with _service(server, token) as client:
        page = client.list_jobs(status=status, limit=limit, offset=offset)
    if as_json:
        print(json.dumps(page))
        return
    table = Table(title="jobs (times in UTC)")
    for column in ("id", "name", "status", "created"):
        table.add_column(column, no_wrap=column == "id")
    table.add_column("trials done", justify="right")
    for job in page["items"]:
        table.add_row(job["id"], job["name"], job["status"], _when(job["created_at"]), _done(job))
    console.print(table)
    if page["total"] > len(page["items"]):
        console.print(f"{len(page['items'])} of {page['total']} jobs from #{offset + 1} (see --limit, --offset)")


def status(job: JobArgument, as_json: JsonOption = False, server: ServerOption = None,
           token: TokenOption = None) -> None:
    """A job's status (and why it waits in the queue), its attempts, timestamps, Ray job, dashboard link,
    report link, GPU-hours, notice, running trials and progress per stage."""
    with _service(server, token) as client:
        found = client.job(job)
        base = client.server
    if as_json:
        print(json.dumps(found))
        return
    report = f"{base}{found['report_url']}" if found.get("report_url") else "-"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    waiting = [("waiting", found["queue_reason"])] if found.get("queue_reason") else []
    tries = found.get("attempts") or []
    attempt = [("attempt", f"{tries[-1]['attempt']}: {tries[-1]['reason']} (by {tries[-1]['by']})")
               ] if len(tries) > 1 else []
    for name, value in (
        ("status", found["status"]), *waiting, *attempt, ("priority", found.get("priority", 0)),
        ("owner", found["owner"]), ("created", _when(found["created_at"])),
        ("started", _when(found["started_at"])), ("ended", _when(found["ended_at"])),
        ("Ray job", found["ray_job_id"] or "-"), ("dashboard", found["dashboard_url"] or "-"),
        ("storage", found["storage"]), ("report", report), ("error", found["error"] or "-"),
    ):
        facts.add_row(name, Text(str(value)))
    console.print(f"job {found['id']} {found['name']!r} (times in UTC)", highlight=False)
    console.print(facts)
    from api.usage_cli import print_job_usage  # it imports this module's options

    print_job_usage(found)
    if found["progress"]:
        console.print(_stage_table(found, "progress per stage"))


def cancel(job: JobArgument, server: ServerOption = None, token: TokenOption = None) -> None:
    """Stop a queued or running job: its Ray job and its trials."""
    with _service(server, token) as client:
        found = client.cancel(job)
    console.print(f"job {found['id']}: {found['status']} (`adf-service resume {found['id']}` goes on "
                  "from its checkpoints)", highlight=False)


def resume(job: JobArgument, server: ServerOption = None, token: TokenOption = None) -> None:
    """Continue a failed or cancelled job from its checkpoints, in a new Ray job."""
    with _service(server, token) as client:
        found = client.resume(job)
    _queued(found)


def rerun(job: JobArgument,
          failed: Annotated[bool, typer.Option("--failed", help="Rerun the failed and unfinished trials.")] = False,
          server: ServerOption = None, token: TokenOption = None) -> None:
    """Run an ended job's failed and unfinished trials again from scratch, keeping every finished trial."""
    if not failed:
        fail(ValueError("rerun: say what to rerun: --failed (the failed and unfinished trials)"))
    with _service(server, token) as client:
        found = client.rerun(job)
    _queued(found)


def extend(job: JobArgument,
           repeats: Annotated[int, typer.Option(min=1, max=100, help="Repeats (new seeds) to add to each searched "
                                                "setting.")],
           server: ServerOption = None, token: TokenOption = None) -> None:
    """Add repeats to a succeeded job's searched settings; what the job has is kept, not rerun."""
    with _service(server, token) as client:
        found = client.extend(job, repeats)
    _queued(found)


def _queued(job: dict) -> None:
    where = f"as Ray job {job['ray_job_id']}" if job.get("queue_reason") is None else f"({job['queue_reason']})"
    console.print(f"job {job['id']}: {job['status']} {where}; {job['attempts'][-1]['reason']} "
                  f"(follow it with `adf-service status {job['id']}`)", highlight=False)


# --- results ------------------------------------------------------------------------------


def _setting(row: dict[str, Any]) -> str:
    if row.get("operators") is None:
        return row.get("modalities") or "-"
    return f"{row['operators']} {row['discretization']} I={row['n_inputs']} cells={row['n_cells']}"


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
