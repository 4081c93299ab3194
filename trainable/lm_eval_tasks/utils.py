"""Loaders for the local test tasks: the items are JSON lines next to this file, read without the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

_HERE = Path(__file__).resolve().parent


def _rows(name: str) -> list[dict[str, Any]]:
    with open(_HERE / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_mc(**_: Any) -> datasets.DatasetDict:
    """The multiple-choice items (`question`, `choices`, `label` = index of the right choice)."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(_rows("schedsweep_mc.jsonl"))})


def load_text(**_: Any) -> datasets.DatasetDict:
    """The perplexity documents (`text`)."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(_rows("schedsweep_text.jsonl"))})
