"""Tokenizers other than GPT-2's: bytes through the same preparation, recorded with the shards, and a model
whose vocabulary does not fit the shards refused before anything runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search_spaces.errors import ConfigError
from trainable.config import TrainConfig, check_runs_here
from trainable.data.bundled import BUNDLED_VAL_FRACTION, bundled_name, ensure_bundled_data
from trainable.data.bundled_corpus import bundled_texts
from trainable.data.loader import read_shard
from trainable.data.prepare import PrepareConfig, is_val_document, load_meta, prepare
from trainable.data.tokenizers import (check_vocab, get_tokenizer, tokenizer_name_of_folder, tokenizer_of_folder,
                                       train_sentencepiece)

REPO = Path(__file__).resolve().parents[2]
DOCS = ["Plain ASCII text.", "Ünïcödé: 東京 and a fox 🦊", "x" * 300]


def _split(folder: Path, split: str) -> np.ndarray:
    meta = load_meta(folder)
    return np.concatenate([np.asarray(read_shard(folder / s)) for s in meta["splits"][split]["shards"]])


def test_bytes_are_the_utf8_bytes_with_an_eot_before_each_document(tmp_path: Path) -> None:
    meta = prepare(PrepareConfig(out_dir=str(tmp_path / "out"), source="bundled", tokenizer="bytes",
                                 val_fraction=0.5), documents=DOCS * 20)
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"]) == ("bytes", 257, 256)
    both = np.concatenate([_split(tmp_path / "out", s) for s in ("train", "val")])
    # Every document is EOT + its bytes, and each split's byte count is its tokens less its EOTs.
    pieces = np.split(both, np.flatnonzero(both == 256))[1:]
    assert sorted(bytes(p[1:].astype(np.uint8)).decode("utf-8") for p in pieces) == sorted(DOCS * 20)
    for split, info in meta["splits"].items():
        assert info["bytes"] == info["tokens"] - info["documents"], split
    assert tokenizer_name_of_folder(tmp_path / "out") == "bytes"


def test_bundled_corpus_in_bytes_has_exactly_its_text(tmp_path: Path) -> None:
    folder = ensure_bundled_data(tmp_path, tokenizer="bytes")
    assert folder.name == bundled_name("bytes") != bundled_name("gpt2")
    meta = json.loads((folder / "meta.json").read_text())
    total_bytes = sum(len(t.encode("utf-8")) for t in bundled_texts())
    assert meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"] == total_bytes
    val = _split(folder, "val")
    assert val.max() <= 256 and meta["splits"]["val"]["tokens"] == len(val) > 200_000  # ~5 % of 4.9M bytes
    # The byte lengths the trainer divides by: 1 per byte, 0 for EOT, so val_bpb = val_loss / ln 2.
    assert get_tokenizer("bytes").byte_lengths()[val].sum() == meta["splits"]["val"]["bytes"]


def test_a_model_that_does_not_fit_the_vocabulary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:  # GPT-2's 50,304-wide head on byte data
        TrainConfig.from_dict({"model": "tiny", "data": {"bundled": True, "tokenizer": "bytes"}})
    assert err.value.field == "model.vocab_size" and "257 to 384" in err.value.message
    with pytest.raises(ConfigError) as err:  # a 257-id head cannot score GPT-2 tokens
        TrainConfig.from_dict({"model": "proving-ground", "data": {"bundled": True}})
    assert err.value.field == "model.vocab_size" and "50257 to 50304" in err.value.message
    TrainConfig.from_dict({"model": {"name": "tiny", "vocab_size": 320}, "data": {"tokenizer": "bytes"}})  # padded: fine
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"data": {"tokenizer": "sp99"}})
    assert err.value.field == "data.tokenizer"
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"data": {"dir": "x", "tokenizer": "bytes"}})
    assert err.value.field == "data.tokenizer"
    # A prepared folder names its tokenizer in meta.json: checked before any process starts.
    prepare(PrepareConfig(out_dir=str(tmp_path / "b"), source="bundled", tokenizer="bytes",
                          val_fraction=0.5), documents=DOCS * 20)
    cfg = TrainConfig.from_dict({"model": "tiny", "data": {"dir": str(tmp_path / "b")}})
    with pytest.raises(ConfigError) as err:
        check_runs_here(cfg, 1, where="")
    assert err.value.field == "model.vocab_size" and "bytes" in err.value.message
    check_vocab(257, "bytes")


@pytest.mark.ddp
def test_sweep_train_on_bytes_reports_bits_per_byte_as_loss_over_ln2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHEDSWEEP_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "sweep.cli", "train", "--config", "configs/proving_ground_train.yaml", "--nproc", "1",
           "--set", "horizon.steps=20", "--set", "eval.interval=10", "--set", "eval.max_tokens=4096"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 2
    for line in lines:
        fields = dict(part.strip().split(" ", 1) for part in line.split("|")[1:4])
        # The EOT before each document is a token with a loss but no byte of text (as for GPT-2 data, so
        # bits per byte compare across tokenizers): val_bpb is val_loss / ln 2 scaled by tokens / bytes,
        # 1 + documents / bytes, ~1.002 on the bundled corpus.
        ratio = float(fields["val_bpb"]) / (float(fields["val_loss"]) / math.log(2))
        assert 1.0 <= ratio < 1.01
    assert (tmp_path / "cache" / "data" / bundled_name("bytes") / "meta.json").is_file()


def test_data_prepare_cli_takes_a_tokenizer_and_names_a_bad_one(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"in{i}.txt").write_text(f"Hello, bytes number {i}.\n")
    src = tmp_path / "in*.txt"
    run = lambda *a: subprocess.run([sys.executable, "-m", "sweep.cli", "data", "prepare", *a], cwd=tmp_path,
                                    env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                                    timeout=300)
    bad = run("--files", str(src), "--out", str(tmp_path / "bad"), "--tokenizer", "latin1")
    assert bad.returncode == 2 and "--tokenizer" in bad.stderr and not (tmp_path / "bad").exists()
    ok = run("--files", str(src), "--out", str(tmp_path / "ok"), "--tokenizer", "bytes", "--val-fraction", "0.3")
    assert ok.returncode == 0, ok.stderr
    assert "tokenizer bytes" in ok.stdout and tokenizer_name_of_folder(tmp_path / "ok") == "bytes"


def test_a_sentencepiece_bpe_trained_on_the_train_split_only_keeps_the_text_exactly(tmp_path: Path) -> None:
    folder = ensure_bundled_data(tmp_path, tokenizer="sp1024")
    meta = load_meta(folder)
    assert (meta["tokenizer"], meta["vocab_size"]) == ("sp1024", 1024)
    tok = tokenizer_of_folder(folder)
    assert tok.name == "sp1024" and (folder / "tokenizer.model").is_file()
    # prepare() checks that each split's text bytes equal its tokens' byte lengths; the decode is exact too.
    val = _split(folder, "val")
    pieces = np.split(val, np.flatnonzero(val == tok.eot_id))[1:]
    texts = set(bundled_texts())
    assert all(tok.decode(p[1:].tolist()) in texts for p in pieces[:200])
    assert 2.0 < meta["splits"]["val"]["bytes"] / (len(val) - len(pieces)) < 4.0  # ~2.6 bytes a token
    # Trained on the train split only: a tokenizer trained on it alone is the same model.
    train_texts = [t for t in bundled_texts() if not is_val_document(t, BUNDLED_VAL_FRACTION)]
    assert train_sentencepiece(train_texts, 1024, 1).pieces() == tok.pieces()
    # A model sized for it fits; the GPT-2 default does not.
    check_vocab(1024, "sp1024")
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"model": "tiny", "data": {"tokenizer": "sp1024"}})
    with pytest.raises(ConfigError) as err:
        prepare(PrepareConfig(out_dir=str(tmp_path / "small"), source="bundled", tokenizer="sp4000", val_fraction=0.5),
                documents=["a few words only"] * 10)
    assert err.value.field == "data.tokenizer" and not (tmp_path / "small").exists()


def test_shards_made_elsewhere_name_no_tokenizer_and_keep_gpt2_byte_counts(tmp_path: Path) -> None:
    # llm.c's own shards, or a test's synthetic ones: no meta.json. Nothing is known to check a model against.
    from test_train_helpers import make_markov_shards

    folder = make_markov_shards(tmp_path / "markov", 2_000, 500)
    assert tokenizer_name_of_folder(folder) is None
    assert tokenizer_of_folder(folder).name == "gpt2"
    cfg = TrainConfig.from_dict({"model": {"name": "tiny", "vocab_size": 512}, "data": {"dir": str(folder)}})
    check_runs_here(cfg, 1, where="")  # not refused
