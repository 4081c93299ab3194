"""The offline-capable GPT-2 tokenizer: known ids, round trips, byte lengths, and each way of loading it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from trainable.data.tokenizer import EOT_ID, gpt2_encoding, token_byte_lengths

TEXT = "The quick brown fox — naïve café, 東京 and emoji 🦊!\n\n  Indented\tline's end."


def test_known_ids_and_eot() -> None:
    enc = gpt2_encoding()
    assert enc.name == "gpt2"
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.eot_token == EOT_ID == 50256
    assert enc.n_vocab == 50257
    assert gpt2_encoding() is enc  # cached per process


def test_round_trip() -> None:
    enc = gpt2_encoding()
    ids = enc.encode_ordinary(TEXT)
    assert enc.decode(ids) == TEXT


def test_token_byte_lengths_sum_to_utf8_bytes() -> None:
    enc = gpt2_encoding()
    lengths = token_byte_lengths(enc)
    assert lengths.shape == (enc.n_vocab,)
    assert lengths[EOT_ID] == 0
    assert lengths[15496] == len(b"Hello") and lengths[995] == len(b" world")
    ids = np.array([EOT_ID] + enc.encode_ordinary(TEXT))
    assert int(lengths[ids].sum()) == len(TEXT.encode("utf-8"))


# The loading paths read environment variables and cache per process, so each runs in a fresh interpreter.
PROBE = (
    "from trainable.data.tokenizer import gpt2_encoding\n"
    "import json; e = gpt2_encoding()\n"
    "print(json.dumps([e.encode_ordinary('Hello world'), e.decode(e.encode_ordinary('round trip ok'))]))\n"
)


def run_probe(cache_dir: str) -> list:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": cache_dir}
    env.pop("DATA_GYM_CACHE_DIR", None)
    # A network attempt would fail or hang here; the timeout turns a hang into a failure.
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_empty_cache_is_seeded_from_local_files(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken"
    assert run_probe(str(cache)) == [[15496, 995], "round trip ok"]
    url = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json"
    seeded = cache / hashlib.sha1(url.encode()).hexdigest()
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == (
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    )
    assert run_probe(str(cache)) == [[15496, 995], "round trip ok"]  # second time: straight from the cache


def test_disabled_cache_builds_from_local_files() -> None:
    assert run_probe("") == [[15496, 995], "round trip ok"]
