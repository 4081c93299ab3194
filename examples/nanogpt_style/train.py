"""A small nanoGPT-style training script (character-level GPT, DDP under torchrun), written for schedsweep.

It stands for "your own training script": it knows nothing about Ray, Tune or MLflow, runs alone

    python train.py --lr-schedule nanogpt_cosine                      # one process
    torchrun --nproc_per_node 2 train.py --lr-schedule wsd_sqrt       # DDP (gloo on CPU, NCCL on GPUs)

and uses schedsweep through three lines marked `# schedsweep` (see README.md for the diff). Data: a UTF-8
text file (`--data`, read as bytes, vocab 256) or, by default, a toy text made up on the spot. Checkpoints
go to `--out-dir`; a run resumes from `--resume` (or, in a sweep, from the checkpoint the sweep hands back).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP

from trainable import hook  # schedsweep


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="a text file; default: toy text")
    p.add_argument("--out-dir", default="out")
    p.add_argument("--resume", default=None, help="a checkpoint folder to continue from")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--eval-iters", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--warmup-iters", type=int, default=20)
    p.add_argument("--min-lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=1337)
    return p.parse_args()


# ---------------------------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = nn.MultiheadAttention(n_embd, n_head, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.size(1)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f, self.head = nn.LayerNorm(n_embd), nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.blocks(self.tok(idx) + self.pos(pos))
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def load_bytes(path: str | None) -> torch.Tensor:
    if path:
        data = Path(path).read_bytes()
    else:
        # Toy text: counting words with a little noise, learnable within a few hundred steps.
        g = torch.Generator().manual_seed(0)
        words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        picks = (torch.arange(20_000) + (torch.rand(20_000, generator=g) < 0.1) * torch.randint(0, 10, (20_000,), generator=g)) % 10
        data = " ".join(words[i] for i in picks.tolist()).encode()
    return torch.tensor(list(data), dtype=torch.long)


def get_batch(data: torch.Tensor, block: int, batch: int, g: torch.Generator, device: str):
    ix = torch.randint(len(data) - block - 1, (batch,), generator=g)
    x = torch.stack([data[i:i + block] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
    return x.to(device), y.to(device)


def get_lr(it: int, args: argparse.Namespace) -> float:
    """nanoGPT's schedule: linear warmup, then cosine down to min_lr (what the sweep replaces)."""
    if it < args.warmup_iters:
        return args.learning_rate * (it + 1) / (args.warmup_iters + 1)
    ratio = (it - args.warmup_iters) / max(args.max_iters - args.warmup_iters, 1)
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(ratio, 1.0))) * (args.learning_rate - args.min_lr)


# ---------------------------------------------------------------------------------------------------------
def main() -> None:
    args = parse_args()
    ddp = int(os.environ.get("RANK", -1)) != -1
    if ddp:
        init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    else:
        rank, local_rank, world = 0, 0, 1
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    master = rank == 0
    torch.manual_seed(args.seed)  # the same initial weights on every rank

    data = load_bytes(args.data)
    n_val = len(data) // 10
    train_data, val_data = data[:-n_val], data[-n_val:]
    model = GPT(256, args.block_size, args.n_layer, args.n_head, args.n_embd).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.1)
    g = torch.Generator().manual_seed(args.seed * 1000 + rank)  # each rank its own batches

    iter_num = 0
    resume = args.resume or hook.resume_checkpoint()  # schedsweep-aware resume (optional, not in the diff)
    if resume:
        ckpt = torch.load(Path(resume) / "ckpt.pt", map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        iter_num = int(ckpt["iter_num"])
        g.manual_seed(args.seed * 1000 + rank + 7919 * iter_num)  # fresh batches after a resume
    raw_model = model
    if ddp:
        model = DDP(model, device_ids=[local_rank] if device.startswith("cuda") else None)

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        out = {}
        eg = torch.Generator().manual_seed(1234)  # the same eval batches every time
        for split, split_data in (("train", train_data), ("val", val_data)):
            losses = [raw_model(*get_batch(split_data, args.block_size, args.batch_size, eg, device)).item()
                      for _ in range(args.eval_iters)]
            out[split] = sum(losses) / len(losses)
        model.train()
        return out

    out_dir = Path(args.out_dir)
    t0 = time.time()
    while True:
        lr = args.learning_rate * hook.lr_multiplier(iter_num, args.max_iters)  # schedsweep (was: get_lr(iter_num, args))
        for group in optimizer.param_groups:
            group["lr"] = lr
        if (iter_num % args.eval_interval == 0 or iter_num == args.max_iters) and master:
            losses = estimate_loss()
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, lr {lr:.2e}, "
                  f"{time.time() - t0:.1f}s", flush=True)
            if iter_num > 0:
                out_dir.mkdir(parents=True, exist_ok=True)
                torch.save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                            "iter_num": iter_num, "args": vars(args)}, out_dir / "ckpt.pt")
                tokens = iter_num * args.batch_size * args.block_size * world
                hook.report(step=iter_num, train_loss=losses["train"], val_loss=losses["val"], lr=lr,  # schedsweep
                            val_bpb=losses["val"] / math.log(2), tokens=tokens, checkpoint=out_dir)
        if iter_num == args.max_iters:
            break
        x, y = get_batch(train_data, args.block_size, args.batch_size, g, device)
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iter_num += 1

    if ddp:
        destroy_process_group()


if __name__ == "__main__":
    main()
