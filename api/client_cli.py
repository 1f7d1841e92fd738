"""`adf-service submit | list | status | cancel | resume | rerun | extend`: the REST service's client.

Plain functions: ``api/cli.py`` assembles them into ``adf-service``. Thin: resolve the server
and token, call :class:`api.client.ServiceClient`, print (results, best, report and compare:
``api/results_cli.py``). Every command takes ``--server``
and ``--token``; without them the client reads ``ADF_SERVER`` / ``ADF_TOKEN``, then the
client config file, then uses http://127.0.0.1:8000 and no token.
"""

from __future__ import annotations

import json
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

__all__ = ["cancel", "follow_job", "list_", "print_summary", "resume", "status", "submit"]

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


def _setting(row: dict[str, Any]) -> str:
    if row.get("operators") is None:
        return row.get("modalities") or "-"
    return f"{row['operators']} {row['discretization']} I={row['n_inputs']} cells={row['n_cells']}"


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
