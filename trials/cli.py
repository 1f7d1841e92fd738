"""The grid commands: `adf-service validate`, `run`, and the service's job driver `run-job`.

Plain functions: ``api/cli.py`` assembles them into ``adf-service``. Ray and the grid spec
(which loads torch) are imported inside the commands, when they run.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from adf_service.console import console, err_console, fail

__all__ = ["RayAddressError", "ray_init_address", "run", "run_job", "summary_table", "validate"]

REACH_TIMEOUT = 5.0  # seconds a cluster's GCS gets to accept a connection before `run` gives up


class RayAddressError(ValueError):
    """``run --address`` names no Ray cluster that answers."""


def _stage_counts_table(counts: dict[str, int]) -> Table:
    table = Table(title="trials per stage")
    table.add_column("stage")
    table.add_column("trials", justify="right")
    for stage, n in counts.items():
        table.add_row(stage, str(n))
    return table


def validate(grid: Annotated[Path, typer.Argument(help="A grid.yaml file.")]) -> None:
    """Check a grid.yaml without running it; print how many trials each stage would make."""
    from trials.checks import launch_problems
    from trials.expand import stage_counts
    from trials.reuse import reuse_problem
    from trials.spec import GridSpecError, grid_warnings, load_grid_with_lines, transfer_source_problem
    from trials.warm_start import warm_start_problem

    try:
        spec, lines = load_grid_with_lines(grid)
    except GridSpecError as exc:
        fail(exc)
    if problem := transfer_source_problem(spec) or warm_start_problem(spec) or reuse_problem(spec.reuse_from):
        fail(f"{grid}: {problem}")
    here = Path(spec.dataset.store).exists() or spec.dataset.synthetic is not None
    if problems := launch_problems(spec, lines=lines, store=here):  # the nodes: `run` and the service's
        fail(GridSpecError(str(grid), problems))
    if not here:
        err_console.print(f"warning: dataset.store: no feature store at {spec.dataset.store} here: `run` and "
                          "the service check its modalities and shapes", markup=False, highlight=False)
    console.print(f"{grid}: valid grid {spec.name!r}")
    console.print(_stage_counts_table(stage_counts(spec)))
    for warning in grid_warnings(spec):
        err_console.print(f"warning: {warning}", markup=False, highlight=False)


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``; None if it has no port."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def ray_init_address(address: str | None, *, timeout: float = REACH_TIMEOUT) -> str:
    """The address `run` passes to ``ray.init``: ``"local"`` (a Ray of its own) unless ``address`` names
    a cluster, which must then accept a connection within ``timeout`` seconds.

    Ray's own default (``address=None``) joins the cluster recorded last on this machine
    (``ray_current_cluster`` in Ray's temp directory) even when that head is dead, and
    ``ray.init`` then retries its GCS for minutes: an address is checked here first.
    ``"auto"`` is the recorded cluster (or ``RAY_ADDRESS``), resolved as ``ray.init`` does.
    """
    if address is None or address == "local":
        return "local"
    target = address
    if "://" not in address:
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address(address) or address
        except (ConnectionError, ValueError) as exc:
            raise RayAddressError(f"--address {address!r}: {exc}") from None
    host_port = _host_port(target)
    if host_port is None:
        raise RayAddressError(f"--address {address!r}: expected HOST:PORT of a Ray cluster's GCS "
                              "(e.g. 10.0.0.5:6379), ray://HOST:PORT, auto or local")
    named = address if target == address else f"{address} ({target})"
    try:
        socket.create_connection(host_port, timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise RayAddressError(
            f"--address {named}: no Ray cluster answers there ({reason} within {timeout:.0f} s); "
            "start its head (`ray start --head`), or leave --address out to run on a Ray of this run's own"
        ) from None
    return address


def run(
    grid: Annotated[Path, typer.Argument(help="A grid.yaml file.")],
    address: Annotated[Optional[str], typer.Option(
        envvar="RAY_ADDRESS",
        help="Ray cluster address (HOST:PORT of its GCS, ray://HOST:PORT, or auto: the cluster `ray start` "
             "recorded on this machine); default: a local Ray started for this run.")] = None,
    job_id: Annotated[Optional[str], typer.Option(help="Job name under the storage path.")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Resume the job with this id.")] = None,
    rerun_failed: Annotated[bool, typer.Option(help="With --resume: run the job's failed trials again, from "
                                               "scratch; its finished trials are kept.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Run every stage of a grid on Ray Tune and write the Parquet result tables."""
    import ray

    from trials.checks import launch_problems, resource_problems
    from trials.dataset import ensure_dataset
    from trials.pending import Unschedulable
    from trials.pipeline import ResourceError, run_grid
    from trials.reuse import reuse_problem
    from trials.spec import GridSpecError, load_grid_with_lines, transfer_source_problem
    from trials.warm_start import warm_start_problem

    try:
        if rerun_failed and resume is None:
            raise ValueError("--rerun-failed: only with --resume JOB (it reruns that job's failed trials)")
        spec, lines = load_grid_with_lines(grid)
        if problem := transfer_source_problem(spec) or warm_start_problem(spec) or reuse_problem(spec.reuse_from):
            raise ValueError(f"{grid}: {problem}")
        if problems := launch_problems(spec, lines=lines):
            raise GridSpecError(str(grid), problems)
        init_address = ray_init_address(address)
        ensure_dataset(spec)
    except (GridSpecError, ValueError) as exc:
        fail(exc)
    if init_address == "local":
        err_console.print("Starting a local Ray for this run (--address or RAY_ADDRESS: a cluster to use); "
                          "with no GPU here, its trials run on CPUs")
        # One machine, nothing to scale: a GPU grid runs on its CPUs rather than wait for ever.
        spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"allow_cpu_fallback": True})})
    context = ray.init(address=init_address, include_dashboard=None, log_to_driver=False)
    try:
        if context.dashboard_url:
            err_console.print(f"Ray dashboard: http://{context.dashboard_url}")
        if problems := resource_problems(spec.resources, [n["Resources"] for n in ray.nodes() if n["Alive"]],
                                         lines=lines):
            fail(GridSpecError(str(grid), problems))
        try:
            outcome = run_grid(spec, job_id=resume or job_id, resume=resume is not None, show_progress=not quiet,
                               rerun_failed=rerun_failed)
        except (ResourceError, Unschedulable, FileNotFoundError, FileExistsError, ValueError) as exc:
            fail(exc)
    finally:
        ray.shutdown()
    table = Table(title=f"job {outcome.job_id}")
    for column in ("stage", "succeeded", "failed", "table"):
        table.add_column(column)
    for stage, path in outcome.tables.items():
        c = outcome.counts.get(stage, {"succeeded": 0, "failed": 0})
        table.add_row(stage, str(c["succeeded"]), str(c["failed"]), str(path))
    console.print(table)
    if outcome.summaries:
        console.print(summary_table(outcome.summaries))


def summary_table(summaries: list[dict]) -> Table:
    """Test top-1 per setting and group of genotypes (searched, random, each control): n, mean ± std,
    best; on the searched row, searched vs random: Δ of means [95 % CI] and the one-sided p
    (trials/summary.py)."""
    table = Table(title="test top-1 (%) per setting: searched vs random vs controls")
    for column, justify in (("setting", "left"), ("genotypes", "left"), ("n", "right"), ("mean ± std", "right"),
                            ("best", "right"), ("vs random: Δ [95 % CI], p", "left")):
        table.add_column(column, justify=justify)
    for s in summaries:
        name = f"{s['operators']}-{s['discretization']}-I{s['n_inputs']}-C{s['n_cells']}"
        groups, versus = s["groups"], s["searched_vs_random"]
        order = [g for g in ("searched", "random") if g in groups] + [g for g in groups if g not in ("searched", "random")]
        for group in order:
            g = groups[group]
            spread = f" ± {g['std']:.1f}" if g["std"] is not None else ""
            comparison = ""
            if group == "searched" and versus is not None:
                interval = (f" [{versus['ci_low']:+.1f}, {versus['ci_high']:+.1f}]"
                            if versus["ci_low"] is not None else "")
                comparison = f"{versus['mean_difference']:+.1f}{interval}, p = {versus['p_value']:.3g}"
            table.add_row(name, group, str(g["n"]), f"{g['mean']:.1f}{spread}", f"{g['best']:.1f}", comparison)
            name = ""
        if s["n_unlearned"]:
            table.add_row(name, "unlearned searches", str(s["n_unlearned"]), "", "", "not counted as searched")
    return table


def run_job(
    job_id: Annotated[str, typer.Argument(help="The service's job id.")],
    resume: Annotated[bool, typer.Option(help="Resume the job from its storage.")] = False,
    rerun_failed: Annotated[bool, typer.Option(
        help="With --resume: rerun its failed trials from scratch.")] = False,
    extend: Annotated[bool, typer.Option(help="Run the trials that the finished job's tables lack (the spec "
                                         "has larger repeats) and merge their rows.")] = False,
    attempt: Annotated[Optional[int], typer.Option(help="Which of the job's drivers this is (1, 2, ...): "
                                                   "an older one stops when a newer one starts.")] = None,
) -> None:
    """A Ray job's driver, started by the service: the spec comes in $ADF_JOB_SPEC (JSON)."""
    import json
    import os

    import ray

    from adf_service.features import FeatureStoreError
    from trials.dataset import ensure_dataset
    from trials.extend import ExtendError
    from trials.pending import Unschedulable
    from trials.pipeline import run_grid
    from trials.spec import GridSpecError, validate_grid
    from trials.storage import Fenced, JobStorage
    from trials.tune_state import TuneStateError

    text = os.environ.get("ADF_JOB_SPEC")
    if not text:
        fail(ValueError("run-job: $ADF_JOB_SPEC is not set (the service passes the job's spec there)"))
    try:
        spec = validate_grid(json.loads(text), source=f"job {job_id}")
        ensure_dataset(spec)
    except (GridSpecError, ValueError) as exc:
        fail(exc)
    # A job whose driver died before Tune wrote its first state starts over (a rerun then runs every trial).
    resume = resume and JobStorage.of(spec.storage, job_id).exists("tuner.pkl")
    ray.init(log_to_driver=False)  # inside a Ray job: the job's cluster
    try:
        outcome = run_grid(spec, job_id=job_id, resume=resume, show_progress=False, attempt=attempt,
                           rerun_failed=rerun_failed and resume, extend=extend)
    except (Fenced, Unschedulable, ExtendError, TuneStateError, FeatureStoreError) as exc:  # no traceback: the message is the job's error
        fail(exc)
    finally:
        ray.shutdown()
    console.print(json.dumps({"job": outcome.job_id, "counts": outcome.counts, "tables": outcome.tables}))
