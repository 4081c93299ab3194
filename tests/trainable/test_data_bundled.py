"""The bundled offline corpus: prepared once, safe under concurrent callers, usable by the loaders."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from trainable.data.bundled import BUNDLED_NAME, ensure_bundled_data
from trainable.data.loader import TrainBatches, read_shard, val_batches
from trainable.data.tokenizer import gpt2_encoding, token_byte_lengths

CALL = "from trainable.data.bundled import ensure_bundled_data; import sys; print(ensure_bundled_data(sys.argv[1]))"


def test_two_processes_at_once_prepare_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen([sys.executable, "-c", CALL, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    folder = cache / "data" / BUNDLED_NAME
    assert [out.strip() for out, _ in results] == [str(folder)] * 2
    # Exactly one finished folder and no temporary leftovers next to it.
    assert sorted(p.name for p in (cache / "data").iterdir() if not p.name.endswith(".lock")) == [BUNDLED_NAME]
    meta = json.loads((folder / "meta.json").read_text())
    written = (folder / "meta.json").stat().st_mtime_ns

    # Idempotent: a later call in this process reuses the folder without touching it.
    started = time.perf_counter()
    assert ensure_bundled_data(cache) == folder
    assert time.perf_counter() - started < 1.0
    assert (folder / "meta.json").stat().st_mtime_ns == written

    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert meta["documents"] > 10_000 and meta["source"]["kind"] == "bundled"
    assert 800_000 < train["tokens"] < 1_300_000
    assert 35_000 < val["tokens"] < 80_000  # ~5 % held out
    lengths = token_byte_lengths(gpt2_encoding())
    for split, info in (("train", train), ("val", val)):
        tokens = np.concatenate([np.asarray(read_shard(folder / s)) for s in info["shards"]])
        assert len(tokens) == info["tokens"]
        assert int(lengths[tokens].sum()) == info["bytes"]

    x, y = TrainBatches(folder, 4, 64, rank=1, world_size=2, data_seed=0).next_batch()
    assert x.shape == (4, 64) and int(x.max()) < 50257
    text = gpt2_encoding().decode(x[0].tolist())
    assert sum(c.isalpha() for c in text) > 0.5 * len(text)  # English prose, not noise
    assert len(list(val_batches(folder, 8, 256, 0, 2))) == len(list(val_batches(folder, 8, 256, 1, 2))) > 5


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch) -> None:
    # A folder that already looks prepared is returned as is: this checks only where the default lives.
    monkeypatch.setenv("SCHEDSWEEP_CACHE", str(tmp_path))
    folder = tmp_path / "data" / BUNDLED_NAME
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    assert ensure_bundled_data() == folder
