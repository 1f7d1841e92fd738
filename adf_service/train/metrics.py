"""Loss and accuracy over a clip set, and the per-epoch running sums of a training pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adf_service.features.dataset import ClipSet
from adf_service.train.runtime import Runtime

__all__ = ["RunningScore", "evaluate"]


class RunningScore:
    """Sums loss and correct predictions on the device; read once per epoch (one host sync)."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.count = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        n = labels.shape[0]
        self.loss += loss.detach().float() * n
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        self.count += n

    def mean_loss(self) -> float:
        return float(self.loss) / max(self.count, 1)

    def top1(self) -> float:
        return 100.0 * float(self.correct) / max(self.count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module, clips: ClipSet, runtime: Runtime, batch_size: int
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 (%) of ``model`` on ``clips`` in eval mode."""
    was_training = model.training
    model.eval()
    score = RunningScore(runtime.torch_device)
    # View 0 always: a validation part of the train split is scored on the same frames each epoch.
    for features, labels in clips.batches(batch_size, shuffle=False, seed=0, epoch=0, view=0):
        features = runtime.prepare_inputs(features)
        labels = labels.to(runtime.torch_device)
        with runtime.autocast():
            logits = model(features)
        score.add(logits, labels, F.cross_entropy(logits.float(), labels))
    model.train(was_training)
    return score.mean_loss(), score.top1()
