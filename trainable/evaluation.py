"""Validation loss and bits per byte, from plain cross-entropy on the model's logits.

This module takes a model and batches, never a training loss: whatever `train_loss` the run optimises
(focal, z-loss, ...), the numbers here are the same function of the weights. Sums are float64 and summed
over ranks before dividing, so the result does not depend on how the val set was split across ranks.

val_bpb = sum of nats / (ln 2 * sum of UTF-8 bytes of the target tokens): a tokenizer-independent
measure, comparable with other tokenizers and corpora.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainable.distributed import all_reduce_sum


@dataclass(frozen=True)
class EvalResult:
    """Val metrics over every rank's share of the val set."""

    val_loss: float  # mean nats per target token
    val_bpb: float  # bits per UTF-8 byte of the target text
    tokens: int
    bytes: int


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    byte_lengths: torch.Tensor,
    device: torch.device,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> EvalResult:
    """Evaluate `model` (the bare module, not the DDP wrapper) on `batches` of (x, y) on this rank.

    `byte_lengths[token_id]` is the UTF-8 byte count of that token (on `device`). Every rank must call
    this with the same number of batches. `autocast()` makes the mixed-precision context. The model's
    train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    # [sum of nats, target tokens, target bytes], all float64: float32 sums lose digits past ~1e7 tokens.
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for x, y in batches:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with autocast():
                    logits = model(x)
                nats = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="sum")
                sums[0] += nats.double()
                sums[1] += y.numel()
                sums[2] += byte_lengths[y].sum().double()
    finally:
        model.train(was_training)
    all_reduce_sum(sums)
    nats, tokens, nbytes = sums.tolist()
    if tokens == 0:
        raise RuntimeError("evaluation saw no val tokens; is the val split empty or eval.max_tokens too small?")
    return EvalResult(
        val_loss=nats / tokens,
        val_bpb=nats / (math.log(2) * nbytes) if nbytes > 0 else float("nan"),
        tokens=int(tokens),
        bytes=int(nbytes),
    )
