"""What made a result: the code and library versions and the run's determinism flags.

Recorded with every genotype a search or a grid trial writes (``Genotype.provenance``), so a
genotype JSON found on its own still says which seed, which code, which torch/CUDA/cuDNN and
which cuDNN flags produced it (issue 12). No Ray and no FastAPI here: the library's own record.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import adf_service

__all__ = ["code_version", "software"]


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    version = adf_service.__version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(adf_service.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{version}+{commit}" if commit else version


def software() -> dict[str, Any]:
    """Python, adf-service, torch, numpy, and the CUDA / cuDNN torch was built with (None on CPU builds)."""
    import numpy
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "adf_service": code_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }
