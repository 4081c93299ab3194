"""AdamW with weight decay only on matrices (2-D weights), fused on GPU."""

from __future__ import annotations

import torch
import torch.nn as nn

from trainable.config import OptimizerSection


def build_optimizer(model: nn.Module, section: OptimizerSection, device: torch.device) -> torch.optim.AdamW:
    """AdamW over `model`'s parameters: 2-D weights (matmuls, embeddings) decay; biases and norms do not.

    The LR set here is the peak; the training loop overwrites it at every step from the schedule.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # a tied weight appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": section.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=section.lr,
        betas=section.betas,
        eps=section.eps,
        fused=device.type == "cuda",
    )
