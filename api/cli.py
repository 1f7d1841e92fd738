"""`adf-service`: the command line, assembled here (the console script) from each package's commands.

Each module below holds plain command functions and registers nothing itself:

- ``adf_service/cli.py``: the library: inspect a space or a genotype, synthesise data,
  search, evaluate, train baselines, the demo, extract features from videos;
- ``trials/cli.py``: a grid on Ray Tune: ``validate``, ``run`` and the service's job driver;
- ``api/server_cli.py``: the service's machine: ``serve``, ``stop-ray``, ``token ...``;
- ``api/client_cli.py``: the service's client: ``submit``, ``list``, ``status`` ...;
- ``api/results_cli.py``: ``results``, ``best``, ``report``, ``compare`` (a service's job or a job directory);
- ``api/local.py``: ``local-job``, the whole service on one machine for one grid.

Commands import torch, Ray, SQLAlchemy and FastAPI when they run, so that ``adf-service``
itself starts in well under a second (tests/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import typer

from adf_service import cli as library
from adf_service.heap import keep_freed_memory_in_heap
from api import client_cli as client
from api import local, logs_cli, notify_cli, results_cli, server_cli, usage_cli
from trials import cli as grid

__all__ = ["app"]

app = typer.Typer(
    help="AutoDeepFuse: PC-DARTS search of 3D-CNN fusion networks for video action recognition.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _process_setup() -> None:
    keep_freed_memory_in_heap()


# `adf-service --help` lists the commands in this order, then the groups.
app.command()(library.space)
app.command()(library.synth)
app.command()(library.search)
app.command()(library.evaluate)
app.command()(library.baseline)
app.command()(library.demo)
app.command()(library.extract)

app.command()(grid.validate)
app.command()(grid.run)
app.command()(results_cli.report)
app.command()(results_cli.compare)
app.command("run-job", hidden=True)(grid.run_job)

app.command()(server_cli.serve)
app.command("stop-ray")(server_cli.stop_ray)

app.command()(client.submit)
app.command("list")(client.list_)
app.command()(client.status)
app.command()(usage_cli.usage)
app.command()(logs_cli.logs)
app.command()(client.cancel)
app.command()(client.resume)
app.command()(client.rerun)
app.command()(client.extend)
app.command()(results_cli.results)
app.command()(results_cli.best)
app.command("notify-secret")(notify_cli.notify_secret)

app.command("local-job")(local.local_job)

genotype_app = typer.Typer(help="Inspect genotypes (discrete fusion cells).", no_args_is_help=True)
genotype_app.command("show")(library.genotype_show)
app.add_typer(genotype_app, name="genotype")

token_app = typer.Typer(help="API bearer tokens: create, list, revoke.", no_args_is_help=True)
token_app.command("create")(server_cli.token_create)
token_app.command("list")(server_cli.token_list)
token_app.command("revoke")(server_cli.token_revoke)
app.add_typer(token_app, name="token")

user_app = typer.Typer(help="Users of the service: their quotas.", no_args_is_help=True)
user_app.command("quota")(server_cli.user_quota)
app.add_typer(user_app, name="user")

if __name__ == "__main__":
    app()
