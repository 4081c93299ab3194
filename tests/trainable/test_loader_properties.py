"""Property tests of the train loader: for any batch shape, world size and interruption point, ranks are
disjoint within an epoch and a resumed loader replays exactly the uninterrupted stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from trainable.data.loader import TrainBatches
from trainable.data.shards import write_shard


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prop")
    start = 0
    for i, n in enumerate([700, 333, 1200]):  # uneven shards, tokens count up so x[0] names a window
        write_shard(root / f"train_{i:06d}.bin", np.arange(start, start + n, dtype=np.uint16))
        start += n
    return root


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 9),
    seq_len=st.sampled_from([4, 7, 16, 33]),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    cut=st.integers(0, 40),
)
def test_resume_and_disjointness(data_dir: Path, batch: int, seq_len: int, world: int, seed: int, cut: int) -> None:
    rank = seed % world
    straight = TrainBatches(data_dir, batch, seq_len, rank, world, seed)
    expected = [straight.next_batch()[0] for _ in range(cut + 5)]
    first = TrainBatches(data_dir, batch, seq_len, rank, world, seed)
    for _ in range(cut):
        first.next_batch()
    resumed = TrainBatches(data_dir, batch, seq_len, rank, world, seed)
    resumed.load_state_dict(first.state_dict())
    for i in range(cut, cut + 5):
        assert torch.equal(resumed.next_batch()[0], expected[i])

    epoch_sets = []
    for r in range(world):
        loader = TrainBatches(data_dir, 1, seq_len, r, world, seed)
        firsts = [int(loader.next_batch()[0][0, 0]) for _ in range(loader.windows_per_epoch)]
        assert len(set(firsts)) == len(firsts)
        epoch_sets.append(set(firsts))
    union = set().union(*epoch_sets)
    assert len(union) == sum(len(s) for s in epoch_sets)  # pairwise disjoint
