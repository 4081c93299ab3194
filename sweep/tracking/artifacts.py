"""Schedule plots logged as MLflow artifacts: each group's schedule, and the best groups' schedules on the
sweep run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from mlflow.tracking import MlflowClient

from search_spaces import schedule_from_dict
from sweep.core.outcome import GroupOutcome, rank_groups
from sweep.core.schedule_plot import plot_schedules


def _log_plot(client: MlflowClient, run_id: str, name: str, schedules: dict[str, Any], total: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        plot_schedules(schedules, total, path)
        client.log_artifact(run_id, str(path))


def log_group_schedule(client: MlflowClient, run_id: str, schedule: Mapping[str, Any], outcome: GroupOutcome,
                       total_steps: int | None) -> None:
    """``schedule.png`` on a group run: its schedule over the sweep's horizon."""
    total = total_steps or max(outcome.step, 1)
    _log_plot(client, run_id, "schedule.png",
              {outcome.name: schedule_from_dict(dict(schedule))}, total)


def log_top_schedules(client: MlflowClient, run_id: str, schedules: Mapping[str, Mapping[str, Any]],
                      outcomes: Sequence[GroupOutcome], total_steps: int | None, top: int = 6) -> None:
    """``schedules_top.png`` on the sweep run: the `top` ranked groups' schedules (group id -> schedule dict)."""
    ranked = rank_groups(outcomes)[0][:top]
    if not ranked:
        return
    named = {f"#{r.rank} {r.group.name}: {r.loss.mean:.4f}":
             schedule_from_dict(dict(schedules[r.group.group_id])) for r in ranked}
    _log_plot(client, run_id, "schedules_top.png", named, total_steps or max(r.group.step for r in ranked))
