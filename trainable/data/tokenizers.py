"""The tokenizers a data folder can be prepared with, behind one small interface.

- ``gpt2``: tiktoken's GPT-2 BPE (50,257 ids, EOT 50256), offline through `trainable.data.tokenizer`;
- ``bytes``: one token per UTF-8 byte (ids 0-255) plus EOT = 256, so 257 ids. Every token is one byte,
  so val_bpb = val_loss / ln 2 exactly, and a small model leaves the unigram regime in minutes on a CPU,
  which the GPT-2 vocabulary's 50k-wide output layer does not allow.

`sweep data prepare --tokenizer NAME` records the name in the folder's ``meta.json``; the trainer reads it
back (`tokenizer_of_folder`) for the per-token byte counts that bits per byte divides by, and refuses a
model whose vocabulary does not fit the folder's (`check_vocab`). A folder without ``meta.json`` (shards
made elsewhere, llm.c's own FineWeb shards) is GPT-2's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from search_spaces.errors import ConfigError

TOKENIZERS = ("gpt2", "bytes")
# A model's vocabulary may be padded up to a multiple of this above the tokenizer's (GPT-2's 50,257 ->
# 50,304 for faster matmuls); more than that is a model meant for other data.
VOCAB_PAD = 128


class Tokenizer(Protocol):
    """What preparing and evaluating need from a tokenizer."""

    name: str
    vocab_size: int  # ids are 0 .. vocab_size - 1
    eot_id: int  # the document separator every document starts with

    def encode_batch(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        """Token ids of each text (no EOT added), as int64 arrays."""

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 byte count of every id's text (int64, `vocab_size` long); the EOT counts 0."""


class Gpt2Tokenizer:
    name, vocab_size = "gpt2", 50257

    def __init__(self) -> None:
        from trainable.data.tokenizer import gpt2_encoding

        self._enc = gpt2_encoding()
        self.eot_id = self._enc.eot_token

    def encode_batch(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        # tiktoken's own thread pool: on 2 cores as fast as a 2-process pool, without forking a process
        # that may hold torch or Ray threads.
        return [np.asarray(ids, dtype=np.int64) for ids in self._enc.encode_ordinary_batch(texts, num_threads=num_threads)]

    def byte_lengths(self) -> np.ndarray:
        from trainable.data.tokenizer import token_byte_lengths

        return token_byte_lengths(self._enc)


class ByteTokenizer:
    name, vocab_size, eot_id = "bytes", 257, 256

    def encode_batch(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]

    def byte_lengths(self) -> np.ndarray:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[self.eot_id] = 0
        return lengths


_VOCAB_SIZES = {"gpt2": Gpt2Tokenizer.vocab_size, "bytes": ByteTokenizer.vocab_size}


def check_tokenizer_name(name: object, field: str = "data.tokenizer") -> str:
    """`name` if it is a known tokenizer, else a `ConfigError` on `field` listing them."""
    if not isinstance(name, str) or name not in TOKENIZERS:
        raise ConfigError(field, f"unknown tokenizer {name!r} (known: {', '.join(TOKENIZERS)})")
    return name


def get_tokenizer(name: str) -> Tokenizer:
    """A tokenizer by name (`ConfigError` on ``data.tokenizer`` for an unknown one)."""
    check_tokenizer_name(name)
    return Gpt2Tokenizer() if name == "gpt2" else ByteTokenizer()


def vocab_size_of(name: str) -> int:
    """The number of ids of a named tokenizer, without building it."""
    return _VOCAB_SIZES[check_tokenizer_name(name)]


def tokenizer_name_of_folder(data_dir: str | os.PathLike) -> str:
    """The tokenizer a prepared folder was made with (``gpt2`` when it has no meta.json)."""
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file():
        return "gpt2"
    try:
        name = json.loads(meta.read_text()).get("tokenizer", "gpt2")
    except (OSError, ValueError, AttributeError):
        raise ConfigError("data.dir", f"{meta} is not readable JSON; prepare the folder again") from None
    return check_tokenizer_name(name, "data.dir")


def tokenizer_of_folder(data_dir: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a prepared folder, for the byte counts of its tokens."""
    return get_tokenizer(tokenizer_name_of_folder(data_dir))


def check_vocab(model_vocab: int, tokenizer: str, field: str = "model.vocab_size") -> None:
    """Refuse a model whose output layer does not fit the data's ids: too small cannot score every token,
    far too large (beyond padding to a multiple of `VOCAB_PAD`) is a model meant for another tokenizer."""
    need = vocab_size_of(tokenizer)
    most = -(-need // VOCAB_PAD) * VOCAB_PAD
    if not need <= model_vocab <= most:
        raise ConfigError(field, f"{model_vocab} does not fit data tokenized with {tokenizer} ({need} ids): "
                                 f"use a vocab_size from {need} to {most}")
