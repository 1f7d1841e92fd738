"""One PC-DARTS step on a supernet: the architecture step, then the weight step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from adf_service.supernet import SearchNetwork
from adf_service.train.architect import first_order_arch_grads, second_order_arch_grads
from adf_service.train.runtime import Runtime

if TYPE_CHECKING:
    from adf_service.train.search import SearchConfig

__all__ = ["SearchStep"]

Batch = tuple[list[torch.Tensor], torch.Tensor]


class SearchStep:
    """The two optimisers of a search and the step that uses them (docs/design.md §5).

    w: SGD with momentum and weight decay on :meth:`SearchNetwork.weight_parameters`;
    α/β: Adam on :meth:`SearchNetwork.arch_parameters`, never in the weight optimiser.
    """

    def __init__(self, model: SearchNetwork, config: SearchConfig, runtime: Runtime):
        self.model, self.config, self.runtime = model, config, runtime
        self.arch_params = model.arch_parameters()
        self.weight_params = model.weight_parameters()
        self.w_optimizer = torch.optim.SGD(
            self.weight_params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.arch_optimizer = torch.optim.Adam(
            self.arch_params,
            config.arch_lr,
            betas=(config.arch_beta1, config.arch_beta2),
            weight_decay=config.arch_weight_decay,
        )

    def _to_device(self, batch: Batch) -> Batch:
        features, labels = batch
        return self.runtime.prepare_inputs(features), labels.to(self.runtime.torch_device)

    def step(self, weight_batch: Batch, arch_batch: Batch | None = None):
        """The architecture step (if ``arch_batch``) *before* the weight step.

        Returns the weight step's (logits, labels, loss) for the epoch's running score.
        """
        weight_batch = self._to_device(weight_batch)
        if arch_batch is not None:
            arch_batch = self._to_device(arch_batch)
            self.arch_optimizer.zero_grad(set_to_none=True)
            if self.config.second_order:
                second_order_arch_grads(
                    self.model,
                    self.arch_params,
                    self.weight_params,
                    weight_batch,
                    arch_batch,
                    xi=self.w_optimizer.param_groups[0]["lr"],
                    weight_decay=self.config.weight_decay,
                    runtime=self.runtime,
                )
            else:
                first_order_arch_grads(self.model, self.arch_params, arch_batch, self.runtime)
            self.arch_optimizer.step()
        features, labels = weight_batch
        self.w_optimizer.zero_grad(set_to_none=True)
        with self.runtime.autocast():
            logits = self.model(features)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward(inputs=self.weight_params)
        torch.nn.utils.clip_grad_norm_(self.weight_params, self.config.grad_clip)
        self.w_optimizer.step()
        return logits, labels, loss
