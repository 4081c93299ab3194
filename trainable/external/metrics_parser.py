"""Reports from the printed lines of scripts that never import the hook (`script.metrics_regex`).

The regex's named groups (`step`, `val_loss` required; `train_loss`, `val_bpb`, `tokens` optional, as
`sweep.config.script.METRIC_GROUPS` allows) become a report's values. Seed 003's lines

    TRAIN_METRICS: step=8000, train_loss=2.6885, val_loss=2.4088

match e.g. `TRAIN_METRICS: step=(?P<step>\\d+), train_loss=(?P<train_loss>[-+.\\w]+), val_loss=(?P<val_loss>[-+.\\w]+)`.
A value that is not a number (`nan` and `inf` are numbers here) makes the line not a report.
"""

from __future__ import annotations

import re
from typing import Any

_INT_GROUPS = ("step", "tokens")


class MetricsLineParser:
    """Turns a matching output line into a report dict (`search`, so the line may carry a prefix)."""

    def __init__(self, pattern: str):
        self.regex = re.compile(pattern)

    def parse(self, line: str) -> dict[str, Any] | None:
        """The report in `line`, or None when it does not match or a captured value is not a number."""
        match = self.regex.search(line)
        if match is None:
            return None
        out: dict[str, Any] = {}
        for name, text in match.groupdict().items():
            if text is None:
                continue  # an optional group that did not take part in the match
            try:
                out[name] = int(float(text)) if name in _INT_GROUPS else float(text)
            except ValueError:
                return None
        if "step" not in out or "val_loss" not in out:
            return None
        return out
