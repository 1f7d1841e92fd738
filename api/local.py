"""``adf-service local-job GRID``: the whole service on one machine, for one job.

It starts a private local Ray (with its dashboard and Jobs API), the REST service in a
thread (uvicorn on 127.0.0.1, SQLite job store, local single-user auth), submits the grid
over HTTP exactly as ``adf-service submit`` does, follows the job to its end and prints
the summary; then it stops the server and Ray. Nothing is left running.

A plain function: ``api/cli.py`` assembles it into ``adf-service``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from adf_service.console import err_console, fail
from api.client_cli import follow_job, print_summary
from api.ports import free_port

__all__ = ["local_job", "run_local_job"]


def run_local_job(grid: Path, data_dir: Path) -> dict:
    """Run ``grid`` through a private Ray + service; returns the finished job (REST view)."""
    import ray
    import uvicorn

    from api.app import create_app
    from api.client import ServiceClient
    from api.http import ProblemHttpProtocol
    from api.settings import Settings

    text = grid.read_text(encoding="utf-8")
    dashboard_port = free_port()
    # "local": a Ray of its own, never the cluster Ray recorded last on this machine (maybe dead)
    context = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=dashboard_port, log_to_driver=False)
    server = None
    thread = None
    try:
        # One user on their own machine: a store may be anywhere they can read (data_roots "/").
        settings = Settings(data_dir=data_dir.resolve(), auth="local", host="127.0.0.1", port=free_port(),
                            ray_address=f"http://127.0.0.1:{dashboard_port}", data_roots=[Path("/")],
                            cpu_fallback=True)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                               log_level="warning", http=ProblemHttpProtocol))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 60
        while not server.started:
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("the REST service did not start")
            time.sleep(0.1)
        url = f"http://{settings.host}:{settings.port}"
        err_console.print(f"Ray dashboard: http://{context.dashboard_url}   REST API: {url}/docs   "
                          f"job store: {settings.db_url}")
        with ServiceClient(url, None) as client:
            job = client.submit(text, source=str(grid))
            err_console.print(f"job {job['id']} submitted ({client.job_url(job['id'])})")
            job = follow_job(client, job)
            print_summary(client, job)
        return job
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(timeout=30)
        ray.shutdown()


def local_job(
    grid: Annotated[Path, typer.Argument(help="A grid.yaml file.")] = Path("examples/grid-smoke.yaml"),
    data_dir: Annotated[Path, typer.Option(help="The service's data directory (job store, runs).")] = Path(
        "runs/local-service"),
) -> None:
    """Run one grid through the whole service on this machine: a private Ray, the REST API
    (SQLite, local auth), submit over HTTP, follow to the end, summary; then stop it all."""
    if not grid.is_file():
        fail(FileNotFoundError(f"{grid}: no such grid file"))
    job = run_local_job(grid, data_dir)
    if job["status"] != "succeeded":
        raise typer.Exit(1)
