"""Evaluation cannot see the training loss: same weights give bit-identical val metrics whatever
`train_loss` is configured (the focal-loss leak of seed 000), and they equal plain cross-entropy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from test_train_helpers import make_markov_shards, tiny_config_dict
from trainable.config import TrainConfig
from trainable.data.loader import val_batches
from trainable.data.tokenizer import gpt2_encoding, token_byte_lengths
from trainable.distributed import setup_distributed
from trainable.train import Trainer


def _trainer(data: Path, train_loss: dict) -> Trainer:
    cfg = TrainConfig.from_dict(tiny_config_dict(data, train_loss=train_loss))
    return Trainer(cfg, setup_distributed("cpu"), hooks=None)


def test_training_only_losses_cannot_move_val_metrics(tmp_path: Path) -> None:
    data = make_markov_shards(tmp_path / "data")
    focal = _trainer(data, {"kind": "focal", "gamma": 2.0, "z_loss": 1e-2})
    plain = _trainer(data, {"kind": "cross_entropy"})

    # The training losses really differ on the same weights and batch...
    x, y = focal.loader.next_batch()
    with torch.no_grad():
        logits = focal.raw_model(x)
    assert abs(focal.loss_fn(logits, y).item() - plain.loss_fn(logits, y).item()) > 0.1

    # ...train a few steps with focal + z-loss, then evaluate the same weights under both configs.
    for _ in range(3):
        focal.train_step()
    plain.raw_model.load_state_dict(focal.raw_model.state_dict())
    assert focal.raw_model.training and plain.raw_model.training
    a, b = focal.evaluate(), plain.evaluate()
    assert a == b  # bit-identical: val_loss, val_bpb, token and byte counts
    assert focal.raw_model.training and plain.raw_model.training  # eval() restored train mode

    # And they are plain cross-entropy / bits per byte, computed here independently in float64.
    cfg = focal.cfg
    lengths = token_byte_lengths(gpt2_encoding())
    nats, tokens, nbytes = 0.0, 0, 0
    model = focal.raw_model.eval()
    with torch.no_grad():
        for vx, vy in val_batches(data, cfg.batch.micro_batch_size, cfg.batch.seq_len, 0, 1, cfg.eval.max_tokens):
            logp = F.log_softmax(model(vx).double(), dim=-1)
            nats += -logp.gather(-1, vy.unsqueeze(-1)).sum().item()
            tokens += vy.numel()
            nbytes += int(lengths[vy.numpy()].astype(np.int64).sum())
    assert a.tokens == tokens and a.bytes == nbytes
    assert math.isclose(a.val_loss, nats / tokens, rel_tol=1e-6)
    assert math.isclose(a.val_bpb, nats / (math.log(2) * nbytes), rel_tol=1e-6)
