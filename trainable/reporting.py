"""What the training loop hands to its caller: per-eval `Report`s through hooks, and a final `TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Report:
    """One eval point. Identical on every rank (metrics are all-reduced before reporting).

    `step` is the number of optimizer steps done; `checkpoint_dir` is a complete checkpoint folder written
    for this step, or None; `final` is True for the last report of the run (finished or diverged).
    Metric names are fixed by docs/contracts.md.
    """

    step: int
    tokens: int
    metrics: dict[str, Any]
    checkpoint_dir: str | None
    final: bool


class Hooks(Protocol):
    """Anything with `on_report`; called on every rank at every eval step and at the end."""

    def on_report(self, report: Report) -> None: ...


@dataclass
class TrainResult:
    """How a run ended, with what it recorded on this rank.

    `lrs[i]` is the learning rate the optimizer actually used at step `start_step + i`; `train_losses[i]`
    the all-reduced train loss of that step. `reports` are the same reports the hooks received.
    """

    status: str  # "finished" or "diverged"
    step: int
    tokens: int
    total_steps: int
    start_step: int
    final_metrics: dict[str, Any]
    reports: list[Report] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    checkpoint_dir: str | None = None
