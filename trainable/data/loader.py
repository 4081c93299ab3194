"""Batches of token windows from prepared shard folders, for DDP training and evaluation.

A *window* is ``seq_len + 1`` consecutive tokens inside one shard: x is its first ``seq_len`` tokens, y the
last ``seq_len`` (x shifted by one). Windows start every ``seq_len`` tokens, so consecutive windows share
only their boundary token and every token is a training input exactly once per epoch.

Training order: each epoch is a permutation of all windows drawn from ``(data_seed, epoch)``; rank r takes
every ``world_size``-th entry starting at r (the tail that does not divide evenly is dropped, so all ranks
have the same epoch length). Ranks therefore never share a window within an epoch, and the order depends
on the data seed only, not on the model-init seed. The loader state is just (epoch, position), so a
resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from trainable.data.shards import ShardError, list_shards, read_shard

__all__ = ["read_shard", "ShardError", "TrainBatches", "val_batches", "count_windows"]


class _Windows:
    """All ``seq_len + 1``-token windows of one split, addressable by a global window index."""

    def __init__(self, data_dir: str | os.PathLike, split: str, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        paths = list_shards(data_dir, split)
        if not paths:
            raise FileNotFoundError(f"{data_dir}: no {split}_*.bin shards (prepare the data first)")
        self.seq_len = seq_len
        self.shards = [read_shard(p) for p in paths]
        # The last token of a shard can only be a target, hence the -1.
        counts = np.array([max(0, (len(s) - 1) // seq_len) for s in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.total = int(self.starts[-1])
        if self.total == 0:
            raise ValueError(
                f"{data_dir}: the {split} split has no window of {seq_len + 1} tokens; use a shorter seq_len or more data"
            )

    def gather(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the windows at `indices` into (x, y) int64 tensors of shape (len(indices), seq_len)."""
        shard_ids = np.searchsorted(self.starts, indices, side="right") - 1
        out = np.empty((len(indices), self.seq_len + 1), dtype=np.int64)
        for row, (i, s) in enumerate(zip(indices.tolist(), shard_ids.tolist())):
            off = (i - int(self.starts[s])) * self.seq_len
            out[row] = self.shards[s][off : off + self.seq_len + 1]
        t = torch.from_numpy(out)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def count_windows(data_dir: str | os.PathLike, split: str, seq_len: int) -> int:
    """How many ``seq_len + 1``-token windows the split holds (the unit both loaders deal in)."""
    return _Windows(data_dir, split, seq_len).total


class TrainBatches:
    """Infinite, seeded, rank-disjoint training batches read from ``train_*.bin`` in `data_dir`."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        data_seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.rank = rank
        self.world_size = world_size
        self.data_seed = int(data_seed)
        self._windows = _Windows(data_dir, "train", seq_len)
        self.windows_per_epoch = self._windows.total // world_size  # per rank
        if self.windows_per_epoch == 0:
            raise ValueError(
                f"{data_dir}: {self._windows.total} training windows of {seq_len + 1} tokens cannot give "
                f"each of {world_size} ranks one; use a shorter seq_len or more data"
            )
        self.epoch = 0
        self.position = 0  # windows of the current epoch this rank has consumed
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def _epoch_order(self) -> np.ndarray:
        """This rank's window indices for the current epoch (computed once per epoch)."""
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.data_seed, self.epoch])
            perm = rng.permutation(self._windows.total)
            mine = perm[self.rank :: self.world_size][: self.windows_per_epoch]
            self._order, self._order_epoch = mine, self.epoch
        return self._order

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) pair, int64 CPU tensors of shape (batch_size, seq_len); rolls into new epochs."""
        picked: list[np.ndarray] = []
        need = self.batch_size
        while need:
            order = self._epoch_order()
            take = order[self.position : self.position + need]
            picked.append(take)
            need -= len(take)
            self.position += len(take)
            if self.position == self.windows_per_epoch:
                self.epoch += 1
                self.position = 0
        return self._windows.gather(np.concatenate(picked))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    @property
    def tokens_per_batch(self) -> int:
        """Input tokens one call to `next_batch` yields on this rank."""
        return self.batch_size * self.seq_len

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is in the stream, plus what must match for the position to mean the same thing."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "data_seed": self.data_seed,
            "seq_len": self.seq_len,
            "rank": self.rank,
            "world_size": self.world_size,
            "total_windows": self._windows.total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; refuses a state from different data, seed, seq_len or world layout."""
        for key in ("data_seed", "seq_len", "rank", "world_size", "total_windows"):
            mine = self.state_dict()[key]
            if int(state[key]) != mine:
                raise ValueError(f"loader state mismatch: {key} is {state[key]} in the checkpoint but {mine} here")
        position = int(state["position"])
        if not 0 <= position < self.windows_per_epoch:
            raise ValueError(f"loader state position {position} is outside [0, {self.windows_per_epoch})")
        self.epoch = int(state["epoch"])
        self.position = position


def val_batches(
    data_dir: str | os.PathLike,
    batch_size: int,
    seq_len: int,
    rank: int = 0,
    world_size: int = 1,
    max_tokens: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic (x, y) batches over ``val_*.bin``, disjoint across ranks, equally many on every rank.

    Windows are taken in file order up to `max_tokens` input tokens (all of the split when None). Batch k
    of rank r is windows ``[(k * world_size + r) * batch_size, ... + batch_size)``; the tail that cannot
    fill one batch on every rank is left out, so each rank runs the same number of forward passes and a
    DDP evaluation cannot hang waiting for a rank that ran out.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    windows = _Windows(data_dir, "val", seq_len)
    usable = windows.total if max_tokens is None else min(windows.total, int(max_tokens) // seq_len)
    n_batches = usable // (batch_size * world_size)
    if n_batches == 0:
        raise ValueError(
            f"{data_dir}: {usable} val windows of {seq_len + 1} tokens (max_tokens={max_tokens}) cannot fill one "
            f"batch of {batch_size} on each of {world_size} ranks"
        )

    def generate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(n_batches):
            first = (k * world_size + rank) * batch_size
            yield windows.gather(np.arange(first, first + batch_size, dtype=np.int64))

    return generate()
