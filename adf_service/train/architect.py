"""The architecture step of PC-DARTS: first-order, or DARTS' second-order unrolled step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adf_service.train.runtime import Runtime

__all__ = ["first_order_arch_grads", "second_order_arch_grads"]

Batch = tuple[list[torch.Tensor], torch.Tensor]


def _loss(model: nn.Module, batch: Batch, runtime: Runtime) -> torch.Tensor:
    features, labels = batch
    with runtime.autocast():
        logits = model(features)
    return F.cross_entropy(logits.float(), labels)


def first_order_arch_grads(
    model: nn.Module, arch_params: Sequence[nn.Parameter], arch_batch: Batch, runtime: Runtime
) -> torch.Tensor:
    """∇_α L_val(w, α) into ``α.grad`` (ξ = 0); weight gradients are not computed."""
    loss = _loss(model, arch_batch, runtime)
    grads = torch.autograd.grad(loss, list(arch_params))
    for p, g in zip(arch_params, grads):
        p.grad = g
    return loss.detach()


def second_order_arch_grads(
    model: nn.Module,
    arch_params: Sequence[nn.Parameter],
    weight_params: Sequence[nn.Parameter],
    weight_batch: Batch,
    arch_batch: Batch,
    xi: float,
    weight_decay: float,
    runtime: Runtime,
    fd_radius: float = 0.01,
) -> torch.Tensor:
    """DARTS eq. (4): ∇_α L_val(w′, α) − ξ ∇²_{α,w} L_train(w, α) ∇_{w′} L_val(w′, α).

    w′ = w − ξ(∇_w L_train + λw) is a virtual SGD step; the Hessian-vector product is the
    central finite difference (∇_α L_train(w⁺) − ∇_α L_train(w⁻)) / 2ε with
    w± = w ± ε∇_{w′}L_val and ε = ``fd_radius`` / ‖∇_{w′}L_val‖ (0.01 in DARTS). Weights are restored afterwards.
    """
    arch_params, weight_params = list(arch_params), list(weight_params)
    original = [p.detach().clone() for p in weight_params]

    train_grads = torch.autograd.grad(_loss(model, weight_batch, runtime), weight_params)
    with torch.no_grad():
        for p, g in zip(weight_params, train_grads):
            p.sub_(xi * (g + weight_decay * p))

    val_loss = _loss(model, arch_batch, runtime)
    grads = torch.autograd.grad(val_loss, arch_params + weight_params)
    arch_grads, dw = grads[: len(arch_params)], grads[len(arch_params) :]
    eps = fd_radius / (torch.sqrt(sum((g.float() ** 2).sum() for g in dw)) + 1e-12)

    def arch_grads_at(sign: float) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            for p, w0, g in zip(weight_params, original, dw):
                p.copy_(w0 + sign * eps * g)
        return torch.autograd.grad(_loss(model, weight_batch, runtime), arch_params)

    plus, minus = arch_grads_at(1.0), arch_grads_at(-1.0)
    with torch.no_grad():
        for p, w0 in zip(weight_params, original):
            p.copy_(w0)
    for p, g, gp, gm in zip(arch_params, arch_grads, plus, minus):
        p.grad = g - xi * (gp - gm) / (2 * eps)
    return val_loss.detach()
