"""Training losses. Only the training loop uses these; evaluation computes plain cross-entropy itself.

`focal` and `z_loss` exist as training-only options, which is exactly why they must never reach
evaluation: a val loss computed with the training loss would not be comparable across runs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from trainable.config import TrainLossSection

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats; logits (B, T, V) are upcast to float32 first."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def make_train_loss(section: TrainLossSection) -> LossFn:
    """The loss function the optimiser minimises, per the `train_loss` config section."""
    gamma, z_coef, kind = section.gamma, section.z_loss, section.kind

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat = logits.float().view(-1, logits.size(-1))
        tgt = targets.view(-1)
        if kind == "focal":
            # Focal loss: down-weight tokens the model already predicts well, by (1 - p_t)^gamma.
            logp_t = -F.cross_entropy(flat, tgt, reduction="none")
            loss = (-((1.0 - logp_t.exp()) ** gamma) * logp_t).mean()
        else:
            loss = F.cross_entropy(flat, tgt)
        if z_coef > 0.0:
            # z-loss (PaLM): keeps the softmax normaliser near 1 so logits do not drift upwards.
            loss = loss + z_coef * torch.logsumexp(flat, dim=-1).pow(2).mean()
        return loss

    return loss_fn
