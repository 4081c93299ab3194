"""The shard reader and the train/val loaders, on tiny hand-made shards whose token values encode position."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainable.data.loader import ShardError, TrainBatches, read_shard, val_batches
from trainable.data.shards import HEADER_INTS, MAGIC, write_shard


def make_dir(root: Path, train_sizes: list[int], val_sizes: list[int]) -> Path:
    """Shards whose tokens count up (mod 60000) so that y == x + 1 and a window is identified by x[0]."""
    start = 0
    for split, sizes in (("train", train_sizes), ("val", val_sizes)):
        for i, n in enumerate(sizes):
            write_shard(root / f"{split}_{i:06d}.bin", (np.arange(start, start + n) % 60000).astype(np.uint16))
            start += n
    return root


def test_read_shard_round_trip(tmp_path: Path) -> None:
    tokens = np.array([5, 50256, 0, 65535], dtype=np.uint16)
    write_shard(tmp_path / "a.bin", tokens)
    got = read_shard(tmp_path / "a.bin")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, tokens)
    assert (tmp_path / "a.bin").stat().st_size == HEADER_INTS * 4 + 2 * len(tokens)


@pytest.mark.parametrize("damage", ["magic", "version", "truncated", "short"])
def test_read_shard_rejects_bad_files_naming_them(tmp_path: Path, damage: str) -> None:
    path = tmp_path / f"bad_{damage}.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    raw = bytearray(path.read_bytes())
    header = np.frombuffer(raw[: HEADER_INTS * 4], dtype=np.int32).copy()
    if damage == "magic":
        header[0] = MAGIC + 1
    elif damage == "version":
        header[1] = 2
    raw[: HEADER_INTS * 4] = header.tobytes()
    if damage == "truncated":
        raw = raw[:-2]
    elif damage == "short":
        raw = raw[:100]
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=f"bad_{damage}.bin"):
        read_shard(path)


def test_train_batches_shapes_and_shift(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [1000, 777], [300])
    loader = TrainBatches(d, batch_size=4, seq_len=16, rank=0, world_size=1, data_seed=1)
    for _ in range(50):  # several epochs (1000//16 + 776//16 = 62+48 = 110 windows)
        x, y = loader.next_batch()
        assert x.shape == y.shape == (4, 16)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)  # y is x shifted by one; windows never straddle a shard border
    assert loader.epoch >= 1


def epoch_windows(loader: TrainBatches) -> list[int]:
    """First tokens of the windows one rank consumes in one epoch (batch_size 1 keeps it exact)."""
    return [int(loader.next_batch()[0][0, 0]) for _ in range(loader.windows_per_epoch)]


def test_train_ranks_disjoint_and_seeded(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [2000, 1500], [300])
    ranks = [epoch_windows(TrainBatches(d, 1, 32, rank=r, world_size=3, data_seed=7)) for r in range(3)]
    sets = [set(w) for w in ranks]
    assert all(len(s) == len(w) for s, w in zip(sets, ranks))  # no window twice within an epoch
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    total = 1999 // 32 + 1499 // 32
    assert sum(len(s) for s in sets) == total - total % 3
    again = epoch_windows(TrainBatches(d, 1, 32, rank=1, world_size=3, data_seed=7))
    other_seed = epoch_windows(TrainBatches(d, 1, 32, rank=1, world_size=3, data_seed=8))
    assert again == ranks[1]
    assert other_seed != ranks[1]


def test_next_epoch_reshuffles(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [4000], [300])
    loader = TrainBatches(d, 1, 32, data_seed=0)
    first, second = epoch_windows(loader), epoch_windows(loader)
    assert sorted(first) == sorted(second) and first != second


def test_resume_continues_the_same_stream(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [900, 600], [300])
    # 46 windows per epoch at seq_len 32; batch 5 makes batches straddle epoch borders.
    straight = TrainBatches(d, 5, 32, rank=0, world_size=1, data_seed=3)
    expected = [straight.next_batch()[0] for _ in range(30)]

    first = TrainBatches(d, 5, 32, rank=0, world_size=1, data_seed=3)
    for _ in range(13):
        first.next_batch()
    state = first.state_dict()
    resumed = TrainBatches(d, 5, 32, rank=0, world_size=1, data_seed=3)
    resumed.load_state_dict(state)
    for i in range(13, 30):
        assert torch.equal(resumed.next_batch()[0], expected[i]), f"batch {i} differs after resume"


def test_load_state_dict_refuses_other_setup(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [900], [300])
    state = TrainBatches(d, 2, 32, data_seed=3).state_dict()
    with pytest.raises(ValueError, match="data_seed"):
        TrainBatches(d, 2, 32, data_seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len"):
        TrainBatches(d, 2, 16, data_seed=3).load_state_dict(state)


def test_val_batches_disjoint_equal_counts_and_capped(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [500], [1000, 700])
    # val windows at seq_len 16: 999//16 + 699//16 = 62 + 43 = 105; batch 4 x 2 ranks -> 13 batches each.
    per_rank = [list(val_batches(d, 4, 16, rank=r, world_size=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 13
    firsts = [{int(v) for x, _ in batches for v in x[:, 0]} for batches in per_rank]
    assert len(firsts[0]) == len(firsts[1]) == 52 and not firsts[0] & firsts[1]
    for x, y in per_rank[0]:
        assert torch.equal(y, x + 1)
    again = list(val_batches(d, 4, 16, rank=1, world_size=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, per_rank[1]))
    capped = list(val_batches(d, 4, 16, rank=0, world_size=2, max_tokens=16 * 20))
    assert len(capped) == 20 // 8
    with pytest.raises(ValueError, match="cannot fill one batch"):
        val_batches(d, 4, 16, rank=0, world_size=2, max_tokens=16 * 7)


def test_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_"):
        TrainBatches(tmp_path, 1, 8)


def _ddp_worker(rank: int, world_size: int, data_dir: str, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loader = TrainBatches(data_dir, 2, 16, rank=rank, world_size=world_size, data_seed=11)
        mine = torch.cat([loader.next_batch()[0][:, 0] for _ in range(loader.windows_per_epoch // 2)])
        gathered = [torch.empty_like(mine) for _ in range(world_size)]
        dist.all_gather(gathered, mine)
        n_val = torch.tensor([sum(1 for _ in val_batches(data_dir, 3, 16, rank, world_size))])
        counts = [torch.empty_like(n_val) for _ in range(world_size)]
        dist.all_gather(counts, n_val)
        if rank == 0:
            torch.save({"train": gathered, "val_counts": [int(c) for c in counts]}, os.path.join(out_dir, "result.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_ranks_disjoint_under_real_process_group(tmp_path: Path) -> None:
    d = make_dir(tmp_path, [1500], [800])
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, str(d), port, str(tmp_path)), nprocs=2, join=True)
    result = torch.load(tmp_path / "result.pt")
    a, b = (set(t.tolist()) for t in result["train"])
    assert len(a) == len(b) > 0 and not a & b
    # 799 // 16 = 49 val windows, 3 per batch x 2 ranks -> 8 batches on each rank.
    assert result["val_counts"] == [8, 8]
