"""What every training loop shares: seeding, device and precision, epoch records, failures."""

from __future__ import annotations

import contextlib
import math
import os
import random
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from adf_service.heap import keep_freed_memory_in_heap  # re-exported: its home has no torch

__all__ = [
    "EpochRecord",
    "Runtime",
    "TrainingDiverged",
    "derive_seed",
    "keep_freed_memory_in_heap",
    "seed_everything",
    "set_cosine_lr",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops and is reported failed at ``epoch``."""

    def __init__(self, epoch: int, what: str):
        super().__init__(f"{what} is not finite at epoch {epoch}: the run diverged")
        self.epoch, self.what = epoch, what

    def __reduce__(self):  # Ray ships exceptions between processes
        return type(self), (self.epoch, self.what)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) from the run's one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_cosine_lr(optimizer: torch.optim.Optimizer, base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine annealing without restarts from ``base_lr`` to 0: the lr of 0-based ``epoch``."""
    lr = 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (e.g. "eval-split") derived from the run's seed, stable across runs."""
    return (seed * 1_000_003 + zlib.crc32(purpose.encode())) % 2**63


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run: device, bf16 autocast, channels_last_3d, determinism.

    ``"auto"`` means CUDA with bf16 autocast and channels_last_3d when a GPU is present,
    plain fp32 on the CPU. ``deterministic`` turns on cuDNN's deterministic mode (and off its
    benchmark autotuner) and torch's deterministic algorithms (warning where an op has none),
    when a model is prepared; off, those flags are reset, so a reused worker does not inherit them.
    """

    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16
    channels_last: str = "auto"  # auto | on | off
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r} not in {{auto, fp32, bf16}}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"channels_last {self.channels_last!r} not in {{auto, on, off}}")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def use_bf16(self) -> bool:
        if self.precision == "auto":
            return self.torch_device.type == "cuda"
        return self.precision == "bf16"

    @property
    def use_channels_last(self) -> bool:
        if self.channels_last == "auto":
            return self.torch_device.type == "cuda"
        return self.channels_last == "on"

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=torch.bfloat16)

    def apply_determinism(self) -> None:
        """Set the process-wide flags ``deterministic`` asks for (before any kernel runs)."""
        if self.deterministic:
            # cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2); set before its first use.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = self.deterministic
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)

    def determinism(self) -> dict[str, bool]:
        """The flags in force now, as a genotype's provenance records them."""
        return {
            "deterministic": self.deterministic,
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        }

    def provenance(self, seed: int, **extra: Any) -> dict[str, Any]:
        """What a genotype made under this runtime records: its seed, the software, the device and
        the determinism flags (adf_service.provenance)."""
        from adf_service.provenance import software

        return {"seed": seed, **extra, "device": self.describe(), "software": software(),
                "determinism": self.determinism()}

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        self.apply_determinism()
        model = model.to(self.torch_device)
        if self.use_channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        return model

    def prepare_inputs(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        device = self.torch_device
        out = [x.to(device, non_blocking=True) for x in features]
        if self.use_channels_last:
            out = [x.contiguous(memory_format=torch.channels_last_3d) for x in out]
        return out

    def describe(self) -> str:
        return f"{self.torch_device}, {'bf16' if self.use_bf16 else 'fp32'}" + (
            ", channels_last_3d" if self.use_channels_last else ""
        )


@dataclass
class EpochRecord:
    """What one epoch measured (losses are means over the epoch's samples; accuracies in %)."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    lr: float
    seconds: float
    test_top1: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
