"""The GPT model: shapes, causality, tied head, GPT-2 init, parameter counts and FLOPs accounting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainable.model import GPT, MODEL_PRESETS, PADDED_VOCAB_SIZE, GPTConfig


def _expected_params(cfg: GPTConfig) -> int:
    # Counted by hand from the architecture, independently of the module tree:
    # token table (tied head) + position table + per block (2 LNs, qkv, proj, fc, proj) + final LN.
    d = cfg.n_embd
    per_block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    return cfg.vocab_size * d + cfg.block_size * d + cfg.n_layer * per_block + 2 * d


@pytest.mark.parametrize("name, approx", [("gpt2-124m", 124.5e6), ("gpt2-350m", 354.9e6)])
def test_named_configs_have_gpt2_sizes(name: str, approx: float) -> None:
    cfg = MODEL_PRESETS[name]
    with torch.device("meta"):  # no memory for the weights
        model = GPT(cfg)
    assert model.num_params() == _expected_params(cfg)
    assert abs(model.num_params() - approx) / approx < 0.002
    assert cfg.vocab_size == PADDED_VOCAB_SIZE == 50304 and PADDED_VOCAB_SIZE % 64 == 0


def test_gpt2_medium_shape() -> None:
    cfg = MODEL_PRESETS["gpt2-350m"]
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (24, 16, 1024)


def test_forward_returns_logits_only_and_head_is_tied() -> None:
    torch.manual_seed(0)
    model = GPT(MODEL_PRESETS["tiny"])
    idx = torch.randint(0, 50257, (3, 17))
    out = model(idx)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 17, PADDED_VOCAB_SIZE)
    assert model.lm_head.weight is model.wte.weight
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(MODEL_PRESETS["tiny"]).eval()
    idx = torch.randint(0, 50257, (1, 20))
    changed = idx.clone()
    changed[0, 12] = (idx[0, 12] + 1) % 50257
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.equal(a[:, :12], b[:, :12])  # the past cannot see the future
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_attention_matches_an_explicit_masked_softmax() -> None:
    torch.manual_seed(0)
    cfg = MODEL_PRESETS["tiny"]
    attn = GPT(cfg).blocks[0].attn.eval()
    x = torch.randn(2, 10, cfg.n_embd)
    q, k, v = attn.c_attn(x).split(cfg.n_embd, dim=2)
    heads = lambda t: t.view(2, 10, cfg.n_head, -1).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(torch.triu(torch.ones(10, 10, dtype=torch.bool), 1), float("-inf"))
    y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(2, 10, cfg.n_embd)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attn.c_proj(y))


def test_gpt2_init_scales_residual_projections() -> None:
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=64)
    model = GPT(cfg)
    scaled = 0.02 / math.sqrt(2 * cfg.n_layer)
    for block in model.blocks:
        assert block.attn.c_proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert block.mlp.c_proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert torch.count_nonzero(block.attn.c_attn.bias) == 0
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_initial_loss_is_near_uniform() -> None:
    torch.manual_seed(0)
    model = GPT(MODEL_PRESETS["tiny"])
    idx = torch.randint(0, 50257, (4, 64))
    targets = torch.randint(0, 50257, (4, 64))  # independent of the inputs
    with torch.no_grad():
        loss = F.cross_entropy(model(idx).view(-1, PADDED_VOCAB_SIZE), targets.view(-1))
    assert abs(loss.item() - math.log(PADDED_VOCAB_SIZE)) < 0.1


def test_flops_per_token_is_6n_plus_attention() -> None:
    cfg = MODEL_PRESETS["gpt2-124m"]
    with torch.device("meta"):
        model = GPT(cfg)
    n = model.num_params() - cfg.block_size * cfg.n_embd  # position table: a lookup, no FLOPs
    assert model.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024
    # The familiar figure: ~0.87 GFLOP per token for GPT-2 small at 1024 context.
    assert 0.8e9 < model.flops_per_token(1024) < 0.9e9
