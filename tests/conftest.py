"""Shared test setup.

The tests live in folders that follow the code's layout (`search_spaces/`, `trainable/`, `sweep/<layer>/`,
`deploy/`), but they share helpers by module name (`from test_seed_groups import read_trials`, or the helper
modules in this folder). So this folder and every test folder below it go on `sys.path` before any test
module is imported, whatever order pytest collects them in.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _folder in [_TESTS, *sorted(p for p in _TESTS.rglob("*") if p.is_dir() and "__pycache__" not in p.parts)]:
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
