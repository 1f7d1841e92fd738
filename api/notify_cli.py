"""`adf-service notify-secret [--rotate]`: your key for checking the signatures of job notifications.

A plain function: ``api/cli.py`` registers it. It takes ``--server`` and ``--token`` like
every client command (api/client_cli.py); docs/rest.md ("Notifications") says how a receiver
checks a signature with the secret.
"""

from __future__ import annotations

from typing import Annotated

import typer

from adf_service.console import err_console
from api.client_cli import ServerOption, TokenOption, _service

__all__ = ["notify_secret"]


def notify_secret(
    rotate: Annotated[bool, typer.Option(
        "--rotate", help="Make a new secret; notifications signed with the old one stop at once.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print your notification secret (the HMAC-SHA256 key of the X-ADF-Signature of your jobs' POSTs)."""
    with _service(server, token) as client:
        secret = client.notify_secret(rotate=rotate)
    print(secret)
    err_console.print("a new secret: give it to your receivers now" if rotate
                      else "keep it secret: anyone with it can sign notifications as this service", highlight=False)
