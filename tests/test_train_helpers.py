"""Helpers for the trainer tests (no tests here): tiny token shards and a 2-rank gloo launcher.

The synthetic corpus is a Markov chain over a few hundred GPT-2 ids: a tiny GPT learns it within tens of
steps, so "val loss falls" is a real signal in seconds, and every test makes its own copy in tmp_path.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainable.data.shards import write_shard


def make_markov_shards(folder: Path, train_tokens: int = 60_000, val_tokens: int = 8_000, seed: int = 0) -> Path:
    """Write `train_000.bin` / `val_000.bin` of a sparse Markov chain over ids 0..299 into `folder`."""
    rng = np.random.default_rng(seed)
    vocab = 300
    successors = rng.integers(0, vocab, size=(vocab, 3))

    def chain(n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        tok = 0
        choice = rng.integers(0, 3, size=n)
        noise = rng.random(n) < 0.1
        jump = rng.integers(0, vocab, size=n)
        for i in range(n):
            out[i] = tok
            tok = jump[i] if noise[i] else successors[tok, choice[i]]
        return out

    folder.mkdir(parents=True, exist_ok=True)
    write_shard(folder / "train_000.bin", chain(train_tokens))
    write_shard(folder / "val_000.bin", chain(val_tokens))
    return folder


def tiny_config_dict(data_dir: Path, **overrides: Any) -> dict:
    """A small, fast trainer config on `data_dir`; `overrides` replace whole top-level sections."""
    d = {
        "model": {"name": "tiny", "block_size": 32},
        "data": {"dir": str(data_dir)},
        "schedule": {"warmup_frac": 0.2, "warmup_curve": "linear", "hold_frac": 0.2, "shape": "cosine", "floor": 0.1},
        "optimizer": {"lr": 1e-2},
        "horizon": {"steps": 12},
        "batch": {"micro_batch_size": 4, "seq_len": 32, "grad_accum": 2},
        "eval": {"interval": 4, "max_tokens": 2048},
        "device": "cpu",
    }
    d.update(overrides)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)  # two ranks share two cores
    # Created here, like Ray Train does before calling the worker function: train() must reuse it.
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, *args)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        # Tear down together: a rank that destroys its group while the other still talks can abort gloo.
        dist.barrier()
    finally:
        # Free DDP reducers and pending gloo work (often held in reference cycles) while the interpreter
        # is alive, then leave without interpreter finalization: a gloo object destroyed during
        # finalization aborts the process ("terminate called without an active exception", SIGABRT),
        # seen once in ~400 CI runs of this harness after both ranks had written their results.
        gc.collect()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(fn: Callable, args: tuple, out_dir: Path, world: int = 2) -> list[Any]:
    """Run `fn(rank, *args)` on `world` gloo ranks in fresh processes; return each rank's JSON result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world, free_port(), fn, args, str(out_dir)), nprocs=world, join=True)
    return [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(world)]
