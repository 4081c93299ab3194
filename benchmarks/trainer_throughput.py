"""Trainer throughput against a minimal plain-PyTorch DDP loop of the same model, batch, data and steps.

    python benchmarks/trainer_throughput.py [--models tiny gpt2-124m] [--steps 20] [--repeats 2]
                                            [--nproc 2] [--out benchmarks/trainer_throughput.json]

Both loops run side by side in the same processes (2 gloo ranks on CPU, NCCL on GPU), alternating
plain / trainer `--repeats` times (first one, then the other) so that a noisy machine hits both alike. Tokens/s counts global tokens
over the training steps only (the trainer's evaluation is paused out by its own meter; the plain loop
has none). Prints a table with the ratio trainer / plain and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainable.config import TrainConfig  # noqa: E402
from trainable.data.loader import TrainBatches  # noqa: E402
from trainable.data.shards import write_shard  # noqa: E402
from trainable.model import GPT  # noqa: E402
from trainable.train import train  # noqa: E402

# Per model: per-rank micro batch and sequence length small enough for a CPU, as on a real run otherwise.
SHAPES = {"tiny": (8, 64), "gpt2-124m": (2, 128), "gpt2-350m": (1, 128)}


def make_data(folder: Path, tokens: int = 400_000) -> Path:
    """Random GPT-2 ids: throughput does not care what the tokens mean, only that both loops read the same."""
    rng = np.random.default_rng(0)
    write_shard(folder / "train_000.bin", rng.integers(0, 50257, size=tokens))
    write_shard(folder / "val_000.bin", rng.integers(0, 50257, size=20_000))
    return folder


def config_for(model: str, data: Path, steps: int) -> TrainConfig:
    micro, seq = SHAPES[model]
    return TrainConfig.from_dict({
        "model": model,
        "data": {"dir": str(data)},
        "schedule": {"preset": "constant"},
        "optimizer": {"lr": 1e-4},
        "horizon": {"steps": steps},
        "batch": {"micro_batch_size": micro, "seq_len": seq, "grad_accum": 1},
        # One eval at the end, on a single batch: the trainer's meter pauses for it anyway.
        "eval": {"interval": steps, "max_tokens": micro * seq * 2},
        "divergence": {"margin": None},
    })


def plain_loop(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> float:
    """The minimal DDP loop: forward, cross-entropy, backward, AdamW step. Returns global tokens/s."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model.gpt).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, betas=cfg.optimizer.betas,
                            weight_decay=cfg.optimizer.weight_decay, fused=device.type == "cuda")
    b = cfg.batch
    loader = TrainBatches(cfg.data.dir, b.micro_batch_size, b.seq_len, rank, world, cfg.data_seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    steps = cfg.total_steps(world)
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        x, y = (t.to(device) for t in loader.next_batch())
        if autocast is not None:
            with autocast:
                logits = ddp(x)
        else:
            logits = ddp(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    if world > 1:
        dist.barrier()
    return steps * cfg.tokens_per_step(world) / (time.perf_counter() - start)


def _worker(rank: int, world: int, port: int, models: list[str], steps: int, repeats: int, data: str, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    results = []
    for name in models:
        cfg = config_for(name, Path(data), steps)
        if cuda:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "device": "cuda"})
        for rep in range(repeats):
            # Alternate which loop goes first, so warm caches or a burst of load do not favour one side.
            if rep % 2 == 0:
                plain = plain_loop(cfg, rank, world, device)
                result = train(cfg)
            else:
                result = train(cfg)
                plain = plain_loop(cfg, rank, world, device)
            trainer = result.final_metrics["tokens_per_s"]
            results.append({"model": name, "repeat": rep, "plain_tokens_per_s": plain,
                            "trainer_tokens_per_s": trainer, "mfu": result.final_metrics.get("mfu")})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.barrier()  # leave together (gloo can abort a rank whose peer is already gone)
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "gpt2-124m"], choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        raw = Path(tmp) / "raw.json"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_worker, args=(args.nproc, port, args.models, args.steps, args.repeats, str(data), str(raw)),
                 nprocs=args.nproc, join=True)
        rows = json.loads(raw.read_text())
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    summary = []
    print(f"device: {device}, {args.nproc} ranks, {args.steps} steps, {args.repeats} repeats (median)")
    print(f"{'model':<12} {'plain tok/s':>12} {'trainer tok/s':>14} {'ratio':>7}")
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        plain = float(np.median([r["plain_tokens_per_s"] for r in mine]))
        trainer = float(np.median([r["trainer_tokens_per_s"] for r in mine]))
        summary.append({"model": name, "plain_tokens_per_s": plain, "trainer_tokens_per_s": trainer,
                        "ratio": trainer / plain})
        print(f"{name:<12} {plain:>12.0f} {trainer:>14.0f} {trainer / plain:>7.3f}")
    Path(args.out).write_text(json.dumps({"device": device, "nproc": args.nproc, "steps": args.steps,
                                          "repeats": args.repeats, "summary": summary, "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
