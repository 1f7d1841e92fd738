"""Checkpoint files: written atomically, read with clear errors, checked against the run."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "adf-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to a different run setting."""


def save_checkpoint(path: str | Path, kind: str, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` via a temporary file and rename, so a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "kind": kind, "state": state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` ("search" | "train"); the error names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an adf-service checkpoint (format {FORMAT!r} expected)")
    if data.get("kind") != kind:
        raise CheckpointError(f"{path}: a {data.get('kind')!r} checkpoint, expected a {kind!r} one")
    return data["state"]
