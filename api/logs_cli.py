"""`adf-service logs JOB [--follow]`: a job's driver log, from its Ray job through the service.

A plain function: ``api/cli.py`` registers it. It takes ``--server`` and ``--token`` like
every client command (api/client_cli.py).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from adf_service.console import err_console
from api.client_cli import JobArgument, ServerOption, TokenOption, _service

__all__ = ["logs"]


def logs(
    job: JobArgument,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing the log as the driver writes it, until the job ends.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print a job's driver log (its Ray job's stdout and stderr); with --follow, until the job ends."""
    with _service(server, token) as client:
        try:
            for chunk in client.logs(job, follow=follow):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            err_console.print(f"stopped following: job {job} keeps running on the server", highlight=False)
            raise typer.Exit(130) from None
