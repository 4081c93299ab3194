"""Checkpoints that make a resumed run continue exactly where the interrupted one was.

A checkpoint folder `step_00000120/` holds:
- `model.pt`, `optimizer.pt` (rank 0: both are identical on every DDP rank);
- `rank{r}.pt` per rank: the torch / CUDA / numpy / Python RNG states and the data loader position;
- `meta.json` (rank 0): step, world size and anything else the trainer wants to remember.

Every rank writes into a hidden temp folder; after a barrier the folder is renamed into place, so a folder
named `step_*` is always complete (a run killed mid-write leaves only a `.tmp-*` folder, cleared next time).
The rename is attempted on every rank and tolerates losing the race, which covers both a shared file system
and per-node local disks (where each node renames its own copy).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from trainable.distributed import DistEnv, barrier

PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "meta.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(
    root: str | Path,
    step: int,
    env: DistEnv,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader_state: dict,
    meta: dict | None = None,
    keep: int | None = None,
) -> Path:
    """Write the checkpoint for `step` (collective: every rank must call it) and return its folder.

    `model` is the bare module (not the DDP or compiled wrapper), so the keys load anywhere. With `keep`,
    only the newest `keep` checkpoints under `root` survive.
    """
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if env.is_main or env.local_rank == 0:
        # Leftovers of a killed run, or a step written again after resuming from an earlier checkpoint.
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
    barrier()
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"rng": _rng_state(env.device), "loader": loader_state}, tmp / f"rank{env.rank}.pt")
    if env.is_main:
        torch.save(model.state_dict(), tmp / "model.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        # meta.json last: list_checkpoints treats its presence as "complete".
        (tmp / "meta.json").write_text(json.dumps({"step": step, "world_size": env.world_size, **(meta or {})}))
    barrier()
    try:
        tmp.rename(final)
    except OSError:
        pass  # another rank on the same file system renamed it first
    barrier()
    if keep is not None and (env.is_main or env.local_rank == 0):
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: str | Path,
    env: DistEnv,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> tuple[dict, dict]:
    """Restore model, optimizer and this rank's RNG states from `path`; return (meta, loader state).

    The world size must match the one that wrote it: each rank resumes its own slice of the data.
    """
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if meta["world_size"] != env.world_size:
        raise ValueError(
            f"checkpoint {path} was written by {meta['world_size']} ranks; this run has {env.world_size}"
        )
    map_location = env.device
    model.load_state_dict(torch.load(path / "model.pt", map_location=map_location, weights_only=True))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True))
    # weights_only=False: the file holds numpy's and Python's RNG state tuples, and we wrote it ourselves.
    per_rank = torch.load(path / f"rank{env.rank}.pt", map_location="cpu", weights_only=False)
    _set_rng_state(per_rank["rng"], env.device)
    return meta, per_rank["loader"]
