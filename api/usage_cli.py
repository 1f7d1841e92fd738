"""`adf-service usage [--user U] [--since DATE] [--json]`: GPU- and CPU-hours per user and job, from the
service (``GET /v1/usage``); and what ``adf-service status`` prints of a job's usage and running trials.

Plain functions: ``api/cli.py`` registers :func:`usage`; it takes ``--server`` and ``--token`` like every
client command (api/client_cli.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from adf_service.console import console
from api.client_cli import JsonOption, ServerOption, TokenOption, _service, _when
from api.status import ENDED_STATUSES

__all__ = ["print_job_usage", "usage"]

_HOURS = ("gpu_hours", "lost_gpu_hours", "cpu_hours", "lost_cpu_hours")


def usage(
    user: Annotated[Optional[str], typer.Option(help=(
        "Whose usage: yours by default; another user's needs an admin token (whose default: everyone's)."))
    ] = None,
    since: Annotated[Optional[str], typer.Option(metavar="DATE", help=(
        "From this ISO date or date-time (UTC unless it names a zone); default: 30 days ago."))] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """GPU- and CPU-hours of your jobs since a date (and those lost to restarts), per job and in all."""
    with _service(server, token) as client:
        answer = client.usage(user=user, since=since)
    if as_json:
        print(json.dumps(answer))
        return
    start = _when(answer["since"])
    if not answer["users"]:
        console.print(f"no jobs since {start} UTC", highlight=False)
    for entry in answer["users"]:
        title = f"{entry['user']}: jobs since {start} UTC, in hours (lost: redone after a failure)"
        table = Table(title=title)
        for column in ("job", "name", "status", "created"):
            table.add_column(column, no_wrap=column in ("job", "created"))
        for column in ("GPU-h", "lost", "CPU-h", "lost"):
            table.add_column(column, justify="right")
        for job in entry["jobs"]:
            table.add_row(job["job_id"], job["name"], job["status"], _when(job["created_at"])[:10],
                          *(f"{job[k]:.2f}" for k in _HOURS))
        table.add_row("all", f"{len(entry['jobs'])} jobs", "", "", *(f"{entry[k]:.2f}" for k in _HOURS),
                      style="bold", end_section=True)
        console.print(table)


def _ago(iso: str) -> str:
    seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def print_job_usage(job: dict[str, Any]) -> None:
    """A job's hours in words ("this job so far: 14.2 GPU-hours, 3.1 of them lost to restarts"), its notice,
    and its running trials with their last progress (GET /v1/jobs/{id}'s usage, notice, running_trials)."""
    summary = (job.get("usage") or {}).get("summary")
    if summary:
        so_far = "" if job["status"] in ENDED_STATUSES else " so far"
        console.print(f"this job{so_far}: {summary}", highlight=False)
    if job.get("notice"):
        console.print(Text.assemble(("notice: ", "bold"), job["notice"]))
    if job.get("running_trials"):
        table = Table(title="running trials (times in UTC)")
        for column in ("trial", "node", "last progress", ""):
            table.add_column(column)
        for trial in job["running_trials"]:
            when = trial["last_progress_at"]
            table.add_row(trial["trial_key"], (trial["node_id"] or "-")[:12], _when(when), _ago(when))
        console.print(table)
