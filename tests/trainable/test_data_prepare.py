"""`trainable.data.prepare` on small local files: shard contents, byte accounting, split determinism,
limits, atomic output and validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from search_spaces.errors import ConfigError
from trainable.data.loader import TrainBatches, read_shard, val_batches
from trainable.data.prepare import PrepareConfig, is_val_document, load_meta, prepare
from trainable.data.tokenizer import EOT_ID, gpt2_encoding, token_byte_lengths

WORDS = "alpha beta gamma délta ëpsilon zeta eta théta iota kappa lambda mu nu xi omicron pi rho 東京 🦊".split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"Doc {i}: " + " ".join(rng.choice(WORDS, size=int(rng.integers(5, 60)))) + "." for i in range(n)]


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n")
    return path


def split_tokens(out: Path, split: str) -> np.ndarray:
    shards = load_meta(out)["splits"][split]["shards"]
    return np.concatenate([np.asarray(read_shard(out / s)) for s in shards])


def documents_of(tokens: np.ndarray) -> list[str]:
    """Decode a split back into documents: each starts with EOT."""
    enc = gpt2_encoding()
    starts = np.flatnonzero(tokens == EOT_ID).tolist() + [len(tokens)]
    assert starts[0] == 0
    return [enc.decode(tokens[a + 1 : b].tolist()) for a, b in zip(starts[:-1], starts[1:])]


def test_jsonl_prepare_round_trips_and_counts_bytes(tmp_path: Path) -> None:
    docs = make_docs(300)
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    out = tmp_path / "out"
    meta = prepare(PrepareConfig(out_dir=str(out), source="files", files=[str(src)], val_fraction=0.2, num_proc=2))
    assert meta == load_meta(out)
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and meta["eot_id"] == EOT_ID
    assert meta["documents"] == 300 and meta["source"]["kind"] == "files"
    lengths = token_byte_lengths(gpt2_encoding())
    decoded = {}
    for split in ("train", "val"):
        tokens = split_tokens(out, split)
        info = meta["splits"][split]
        assert info["tokens"] == len(tokens) > 0
        split_docs = documents_of(tokens)
        assert info["documents"] == len(split_docs)
        assert info["bytes"] == sum(len(d.encode("utf-8")) for d in split_docs) == int(lengths[tokens].sum())
        decoded[split] = split_docs
    # Every document lands exactly once, in the split its hash picks, in input order.
    assert decoded["val"] == [d for d in docs if is_val_document(d, 0.2)]
    assert decoded["train"] == [d for d in docs if not is_val_document(d, 0.2)]
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_split_is_deterministic_streaming_or_not(tmp_path: Path) -> None:
    docs = make_docs(200, seed=1)
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    streamed = tmp_path / "streamed"
    again = tmp_path / "again"
    in_memory = tmp_path / "in_memory"
    for out in (streamed, again):
        prepare(PrepareConfig(out_dir=str(out), source="files", files=[str(src)], val_fraction=0.3))
    # The same texts handed over as a plain list (no datasets streaming) give the same split and tokens.
    prepare(PrepareConfig(out_dir=str(in_memory), source="files", files=[str(src)], val_fraction=0.3), documents=docs)
    for split in ("train", "val"):
        ref = split_tokens(streamed, split)
        np.testing.assert_array_equal(ref, split_tokens(again, split))
        np.testing.assert_array_equal(ref, split_tokens(in_memory, split))


def test_small_shards_limits_and_loader(tmp_path: Path) -> None:
    docs = make_docs(400, seed=2)
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    out = tmp_path / "out"
    meta = prepare(PrepareConfig(out_dir=str(out), source="files", files=[str(src)], shard_tokens=1000,
                                 val_fraction=0.1, max_tokens=5000))
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["tokens"] + val["tokens"] == 5000  # exact: the last document is cut
    assert len(train["shards"]) == -(-train["tokens"] // 1000) > 1
    assert all(len(read_shard(out / s)) <= 1000 for s in train["shards"] + val["shards"])
    lengths = token_byte_lengths(gpt2_encoding())
    for split in ("train", "val"):
        assert meta["splits"][split]["bytes"] == int(lengths[split_tokens(out, split)].sum())
    x, y = TrainBatches(out, 2, 32, rank=0, world_size=2, data_seed=0).next_batch()
    assert x.shape == (2, 32) and int(x.max()) < 50257
    assert len(list(val_batches(out, 1, 32, 0, 1))) >= 1

    capped = prepare(PrepareConfig(out_dir=str(tmp_path / "docs"), source="files", files=[str(src)],
                                   max_documents=50, val_fraction=0.5, val_tokens=100))
    assert capped["documents"] == 50
    # The val cap stops adding held-out documents once reached (the last one may overshoot it).
    assert 100 <= capped["splits"]["val"]["tokens"] < 100 + 80


def test_text_files_are_one_document_each(tmp_path: Path) -> None:
    docs = make_docs(40, seed=3)
    for i, d in enumerate(docs):
        (tmp_path / f"d{i:02d}.txt").write_text(d.replace(": ", ":\n\n"), encoding="utf-8")
    out = tmp_path / "out"
    meta = prepare(PrepareConfig(out_dir=str(out), source="files", files=[str(tmp_path / "*.txt")], val_fraction=0.25))
    assert meta["documents"] == 40
    got = documents_of(split_tokens(out, "train")) + documents_of(split_tokens(out, "val"))
    assert sorted(got) == sorted(d.replace(": ", ":\n\n") for d in docs)


def test_parquet_and_hub_style_local_dataset(tmp_path: Path) -> None:
    docs = make_docs(120, seed=4)
    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict({"body": docs}).to_parquet(str(tmp_path / "pq" / "part.parquet"))
    a = prepare(PrepareConfig(out_dir=str(tmp_path / "a"), source="files", files=[str(tmp_path / "pq" / "*.parquet")],
                              text_field="body", val_fraction=0.2))
    # The `hf` source is `load_dataset(NAME, streaming=True)`: a local dataset folder exercises it offline.
    b = prepare(PrepareConfig(out_dir=str(tmp_path / "b"), source="hf", dataset=str(tmp_path / "pq"),
                              dataset_config=None, text_field="body", val_fraction=0.2))
    assert a["documents"] == b["documents"] == 120
    assert a["splits"] == b["splits"]
    assert b["source"]["dataset"] == str(tmp_path / "pq")


def test_failure_midway_leaves_nothing(tmp_path: Path) -> None:
    def exploding():
        yield from make_docs(300)
        raise RuntimeError("source died")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="source died"):
        prepare(PrepareConfig(out_dir=str(out), source="files", files=[str(write_jsonl(tmp_path / "x.jsonl", ["a"]))],
                              shard_tokens=500), documents=exploding())
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]


def test_missing_text_column_names_the_field(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", make_docs(10), field="content")
    with pytest.raises(ConfigError) as err:  # found only while streaming, after the folders were made
        prepare(PrepareConfig(out_dir=str(tmp_path / "new" / "deeper" / "out"), source="files", files=[str(src)]))
    assert err.value.field == "data.text_field"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"val_fraction": 0.0}, "data.val_fraction"),
        ({"val_fraction": 1.5}, "data.val_fraction"),
        ({"val_fraction": "x"}, "data.val_fraction"),
        ({"shard_tokens": 0}, "data.shard_tokens"),
        ({"max_tokens": -5}, "data.max_tokens"),
        ({"val_tokens": 2.5}, "data.val_tokens"),
        ({"num_proc": 0}, "data.num_proc"),
        ({"source": "ftp"}, "data.source"),
        ({"files": ["/nonexistent/*.jsonl"]}, "data.files"),
        ({"files": []}, "data.files"),
        ({"files": ["BADEXT"]}, "data.files"),
        ({"out_dir": "NONEMPTY"}, "data.out_dir"),
    ],
)
def test_validation_names_the_field(tmp_path: Path, changes: dict, field: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", make_docs(5))
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    kwargs = {"out_dir": str(tmp_path / "out"), "source": "files", "files": [str(src)], **changes}
    if kwargs["files"] == ["BADEXT"]:
        kwargs["files"] = [str(tmp_path / "notes.csv")]
    if kwargs["out_dir"] == "NONEMPTY":
        kwargs["out_dir"] = str(tmp_path / "full")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError) as err:
        prepare(PrepareConfig(**kwargs))
    assert err.value.field == field
    assert sorted(os.listdir(tmp_path)) == before  # nothing created
