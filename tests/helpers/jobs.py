"""Jobs and result rows for the job-store tests (tests/api/test_jobstore.py, test_pages.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from api.jobstore import create_job
from api.models import Job, User

__all__ = ["ROOT", "result_row", "submit"]

ROOT = Path("/srv/adf/runs")  # the storage root jobs are created under; nothing is written there


def submit(s: Session, owner: User, name: str = "grid", *, key: str | None = None, body: str = "{}",
           n_trials: int = 10) -> tuple[Job, bool]:
    """``create_job`` with a body's stand-in hash and ``ROOT``: (the job, whether it is new)."""
    return create_job(
        s,
        owner=owner,
        name=name,
        spec_json=body,
        request_hash=f"hash-of-{body}",
        n_trials=n_trials,
        storage_root=ROOT,
        idempotency_key=key,
    )


def result_row(i: int, stage: str = "search", **overrides) -> dict:
    """Trial ``i``'s row of a result table (RESULT_SCHEMA's columns); ``overrides`` replace values."""
    row = {
        "job": "ignored",
        "stage": stage,
        "trial_id": f"t{i:05d}",
        "trial_key": f"{stage}-S{1 + i % 2}-r{i}",
        "operators": f"S{1 + i % 2}",
        "discretization": ("all", "topk")[i // 2 % 2],
        "n_inputs": 1 + i % 3,
        "n_cells": 1 + i % 4,
        "modalities": "rgb+flow+pose",
        "repeat": i % 6,
        "seed": 2**40 + i,
        "best_epoch": 3,
        "val_loss": 0.5,
        "val_top1": 70.0,
        "test_top1": 71.25,
        "fusion_params": 117_000_000,
        "total_params": 5_000_000_000 + i,
        "fusion_flops": 3_000_000_000_000 + i,
        "node_id": f"{i:056x}",
        "learned": i % 2 == 0,
        "skip_edges": i % 5,
        "genotype": "{}",
        "config": "{}",
        "wall_seconds": 1.5,
        "device": "node-1 cuda:0",
        "gpus": 0.25,
        "cpus": 1.0,
        "gpu_seconds": 0.375 + i,
        "cpu_seconds": 1.5 + i,
        "lost_gpu_seconds": 0.125,
        "lost_cpu_seconds": 0.5,
        "attempts": 1 + i % 2,
        "status": "succeeded",
        "error": None,
        "reused_from": None,
    }
    row.update(overrides)
    return row
