"""The tokenizers a data folder can be prepared with, behind one small interface.

- ``gpt2``: tiktoken's GPT-2 BPE (50,257 ids, EOT 50256), offline through `trainable.data.tokenizer`;
- ``bytes``: one token per UTF-8 byte (ids 0-255) plus EOT = 256, so 257 ids. Every text token is one
  byte, so val_bpb is val_loss / ln 2 up to the EOT share (see `ByteTokenizer`), and a small model leaves
  the unigram regime in minutes on a CPU, which GPT-2's 50k-wide output layer does not allow;
- ``spN`` (e.g. ``sp1024``): a sentencepiece BPE of N ids trained on the folder's train split only, as
  parameter-golf's sp1024 is: byte fallback (no unknown text), no normalization (the text's bytes are
  kept exactly, so the byte counts behind bits per byte are exact), its model saved with the shards.

`sweep data prepare --tokenizer NAME` records the name in the folder's ``meta.json``; the trainer reads it
back (`tokenizer_of_folder`) for the per-token byte counts that bits per byte divides by, and refuses a
model whose vocabulary does not fit the folder's (`check_vocab`). A folder without ``meta.json`` (shards
made elsewhere, such as llm.c's own FineWeb shards) has no known tokenizer: its byte counts are GPT-2's,
as they always were, and its model's vocabulary is not checked.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from search_spaces.errors import ConfigError

_SP_NAME = re.compile(r"sp([0-9]+)")
# 256 byte pieces, unknown and EOT, and room for merges; ids must fit the uint16 shards.
SP_MIN_VOCAB, SP_MAX_VOCAB = 320, 65535
SP_MODEL_FILE = "tokenizer.model"  # next to the shards
SP_TRAIN_DOCUMENTS = 200_000  # documents a BPE is trained on at most (the first ones of the train split)
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
    """UTF-8 bytes. The EOT before each document has a loss but no byte of text, as in GPT-2 data, so bits
    per byte stay comparable across tokenizers; val_bpb = val_loss / ln 2 x tokens / bytes, where
    tokens / bytes = 1 + documents / bytes (1.002 on the bundled corpus)."""

    name, vocab_size, eot_id = "bytes", 257, 256

    def encode_batch(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]

    def byte_lengths(self) -> np.ndarray:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[self.eot_id] = 0
        return lengths


class SentencePieceTokenizer:
    """A trained sentencepiece BPE (`train_sentencepiece`), from its serialized model."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self._sp.get_piece_size()
        self.name = f"sp{self.vocab_size}"
        self.eot_id = self._sp.eos_id()

    def encode_batch(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int64) for ids in self._sp.encode(texts, num_threads=num_threads)]

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def pieces(self) -> list[str]:
        """Every id's piece, in id order (what two trainings are compared by)."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    def byte_lengths(self) -> np.ndarray:
        sp, lengths = self._sp, np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            if sp.is_control(i) or sp.is_unknown(i):
                continue  # EOT and the never-used unknown: no text
            # A byte-fallback piece is one byte; any other piece is its text, with the space marker a space.
            lengths[i] = 1 if sp.is_byte(i) else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return lengths


def train_sentencepiece(texts: Iterable[str], vocab_size: int, num_threads: int) -> SentencePieceTokenizer:
    """Train a BPE of `vocab_size` ids on `texts` (in memory; nothing is written)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
            # Exact text: no normalization, no added or collapsed spaces; bytes for anything unseen.
            normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
            byte_fallback=True, character_coverage=0.9995, split_digits=True,
            unk_id=0, eos_id=1, eos_piece="<eot>", bos_id=-1, pad_id=-1,
            max_sentence_length=1 << 24, num_threads=num_threads, minloglevel=2,
        )
    except RuntimeError as err:  # e.g. too little text for that many merges
        raise ConfigError("data.tokenizer", f"cannot train sp{vocab_size}: {str(err).strip().splitlines()[-1]}") from None
    return SentencePieceTokenizer(model.getvalue())


def check_tokenizer_name(name: object, field: str = "data.tokenizer") -> str:
    """`name` if it is a known tokenizer, else a `ConfigError` on `field` listing them."""
    if isinstance(name, str) and (name in ("gpt2", "bytes") or _SP_NAME.fullmatch(name)):
        if name.startswith("sp") and not SP_MIN_VOCAB <= int(name[2:]) <= SP_MAX_VOCAB:
            raise ConfigError(field, f"{name}: a sentencepiece vocabulary of {SP_MIN_VOCAB} to {SP_MAX_VOCAB} ids")
        return name
    raise ConfigError(field, f"unknown tokenizer {name!r} (known: gpt2, bytes, spN such as sp1024)")


def get_tokenizer(name: str) -> Tokenizer:
    """GPT-2's or the byte tokenizer by name; a sentencepiece one comes from its folder (`tokenizer_of_folder`)."""
    if check_tokenizer_name(name) == "gpt2":
        return Gpt2Tokenizer()
    if name == "bytes":
        return ByteTokenizer()
    raise ConfigError("data.tokenizer", f"{name} is trained per data folder: read it with tokenizer_of_folder")


def vocab_size_of(name: str) -> int:
    """The number of ids of a named tokenizer, without building it."""
    name = check_tokenizer_name(name)
    return {"gpt2": Gpt2Tokenizer.vocab_size, "bytes": ByteTokenizer.vocab_size}.get(name) or int(name[2:])


def tokenizer_name_of_folder(data_dir: str | os.PathLike) -> str | None:
    """The tokenizer a prepared folder was made with; None when it has no meta.json (not known). A meta.json
    without the field is from before tokenizers were recorded, when every folder was GPT-2's."""
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file():
        return None
    try:
        name = json.loads(meta.read_text()).get("tokenizer", "gpt2")
    except (OSError, ValueError, AttributeError):
        raise ConfigError("data.dir", f"{meta} is not readable JSON; prepare the folder again") from None
    return check_tokenizer_name(name, "data.dir")


def tokenizer_of_folder(data_dir: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a prepared folder, for the byte counts of its tokens (GPT-2's when not known)."""
    name = tokenizer_name_of_folder(data_dir) or "gpt2"
    if not name.startswith("sp"):
        return get_tokenizer(name)
    path = Path(data_dir) / SP_MODEL_FILE
    try:
        tokenizer = SentencePieceTokenizer(path.read_bytes())
    except (OSError, RuntimeError) as err:
        raise ConfigError("data.dir", f"{path}: the {name} model of this folder cannot be read ({err}); "
                                      "prepare the folder again") from None
    if tokenizer.name != name:
        raise ConfigError("data.dir", f"{path} has {tokenizer.vocab_size} ids but meta.json says {name}")
    return tokenizer


def check_folder_vocab(model_vocab: int, data_dir: str | os.PathLike, field: str = "model.vocab_size") -> None:
    """`check_vocab` against the tokenizer a folder's meta.json names; nothing to check without one."""
    name = tokenizer_name_of_folder(data_dir)
    if name is not None:
        check_vocab(model_vocab, name, field)


def check_vocab(model_vocab: int, tokenizer: str, field: str = "model.vocab_size") -> None:
    """Refuse a model whose output layer does not fit the data's ids: too small cannot score every token,
    far too large (beyond padding to a multiple of `VOCAB_PAD`) is a model meant for another tokenizer."""
    need = vocab_size_of(tokenizer)
    most = -(-need // VOCAB_PAD) * VOCAB_PAD
    if not need <= model_vocab <= most:
        raise ConfigError(field, f"{model_vocab} does not fit data tokenized with {tokenizer} ({need} ids): "
                                 f"use a vocab_size from {need} to {most}")
