"""Checkpoint files on one process: complete folders only, RNG states restored, keep-last-K, mismatches."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainable.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from trainable.distributed import DistEnv
from trainable.model import GPT, GPTConfig

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), owns_group=False)
SMALL = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=128)


def _model_and_opt(seed: int) -> tuple[GPT, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = GPT(SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 128, (2, 8))).sum().backward()
    opt.step()  # so the optimizer has state worth saving
    return model, opt


def test_round_trip_restores_weights_optimizer_rng_and_loader_state(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    torch.manual_seed(123), np.random.seed(7), random.seed(9)
    path = save_checkpoint(tmp_path, 5, ENV, model, opt, {"epoch": 1, "position": 3}, {"note": "x"})
    expected = (torch.rand(3), np.random.rand(3), random.random())

    other, other_opt = _model_and_opt(1)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    meta, loader_state = load_checkpoint(path, ENV, other, other_opt)
    assert meta["step"] == 5 and meta["note"] == "x" and meta["world_size"] == 1
    assert loader_state == {"epoch": 1, "position": 3}
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], other_opt.state_dict()["state"][0]["exp_avg"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_keep_last_k_and_incomplete_folders_are_ignored(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, ENV, model, opt, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000020", "step_00000030"]
    # A killed writer leaves a temp folder, or a step folder without meta.json: never picked up.
    (tmp_path / ".tmp-step_00000040").mkdir()
    (tmp_path / "step_00000050").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000030"
    save_checkpoint(tmp_path, 40, ENV, model, opt, {}, keep=2)  # clears its own leftover temp folder
    assert not (tmp_path / ".tmp-step_00000040").exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000040"
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_world_size_mismatch_and_incomplete_checkpoint_are_refused(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    path = save_checkpoint(tmp_path, 1, ENV, model, opt, {})
    two = DistEnv(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), owns_group=False)
    with pytest.raises(ValueError, match="written by 1 ranks"):
        load_checkpoint(path, two, model, opt)
    (path / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(path, ENV, model, opt)
