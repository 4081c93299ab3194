"""The llm.c token shard format: one file = a 256-int32 header, then the tokens as uint16.

Header: ``[20240520 (magic), 1 (version), token count, 0, ...]``. uint16 is enough for GPT-2's 50,257 ids and
halves the disk and page-cache footprint compared with int32; memory-mapping keeps reading a shard free.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.uint16


class ShardError(ValueError):
    """A shard file that is not a valid llm.c uint16 shard (the message names the file)."""


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write `tokens` (ids < 65536) to `path` in the llm.c format, fsynced so a rename after it is durable."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"{path}: tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > np.iinfo(TOKEN_DTYPE).max):
        raise ValueError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1], header[2] = MAGIC, VERSION, tokens.size
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(TOKEN_DTYPE, copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Memory-map the tokens of a shard (read-only uint16), after checking magic, version and size."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"{path}: shard file does not exist") from None
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte llm.c header")
    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if int(header[0]) != MAGIC:
        raise ShardError(f"{path}: bad magic {int(header[0])} (expected {MAGIC}); not an llm.c token shard")
    if int(header[1]) != VERSION:
        raise ShardError(f"{path}: unsupported version {int(header[1])} (expected {VERSION}: uint16 tokens)")
    count = int(header[2])
    expected = HEADER_BYTES + count * np.dtype(TOKEN_DTYPE).itemsize
    if count < 0 or size != expected:
        raise ShardError(
            f"{path}: header says {count} tokens ({expected} bytes) but the file has {size} bytes; truncated or corrupt"
        )
    if count == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(count,))


def list_shards(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The shards of one split (``train`` or ``val``) in `data_dir`, in file-name order."""
    return sorted(Path(data_dir).glob(f"{split}_*.bin"))
