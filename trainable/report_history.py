"""Every report of a seed run, carried inside each of its checkpoints and said again after a restart.

A seed run restarted from its latest checkpoint (a driver kill and `sweep resume`, or a dead worker) starts
training after that checkpoint's step. The reports it made up to there may never have become group
results: a group result needs *every* seed at a step, and seeds run at their own pace, so one seed can be
at its step-100 checkpoint while the group has only reported step 25. Without the history, that seed's
steps 50 and 75 were lost for good on restart (never in MLflow, and the rung at step 50 never decided).

So rank 0 writes the run's whole report history (`HISTORY_FILE`, a JSON list of metrics dicts, oldest first)
into every checkpoint it uploads, and a restarted run first reports that history again, on every rank (a
report is collective), before it trains on. The group side takes what it needs: a fresh group aggregator
forms every group result again, the MLflow callback skips steps a run already has, the searcher skips
steps Optuna already has, and ASHA decides only rungs it has not decided (its rungs are saved).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

HISTORY_FILE = "schedsweep_reports.json"
# What checkpoints written before the history existed hold: the one report they were made at.
LEGACY_FILES = ("report.json", "schedsweep_report.json")


class ReportHistory:
    """The metrics of every report of one seed run so far (rank 0's; every rank may hold a copy)."""

    def __init__(self, rows: list[dict[str, Any]] | None = None):
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows or []]

    def add(self, metrics: dict[str, Any]) -> None:
        self.rows.append(dict(metrics))

    @property
    def last(self) -> dict[str, Any] | None:
        return self.rows[-1] if self.rows else None

    @property
    def finished(self) -> bool:
        """Whether the run's last report was its final one (a restart then only says it all again)."""
        return bool(self.last and self.last.get("final"))

    def write(self, folder: Path) -> None:
        (Path(folder) / HISTORY_FILE).write_text(json.dumps(self.rows))

    @classmethod
    def read(cls, folder: Path) -> "ReportHistory":
        """The history saved in checkpoint `folder`; from an older checkpoint, its single report; else empty."""
        folder = Path(folder)
        path = folder / HISTORY_FILE
        if path.exists():
            return cls(json.loads(path.read_text()))
        for name in LEGACY_FILES:
            if (folder / name).exists():
                return cls([json.loads((folder / name).read_text())])
        return cls()

    def replay(self, report: Callable[[dict[str, Any]], None]) -> None:
        """Say every saved report again through `report` (`ray.train.report`: call it on every rank)."""
        for metrics in self.rows:
            report(dict(metrics))
