"""The one record of a seed group, from whichever source it is read, and the one ranking of groups.

A `GroupOutcome` is built from a Tune trial (its config and last result: `outcome_from_result`,
`outcome_from_trial`) while a sweep runs or from its saved Tune state, and from the MLflow store
(`sweep.analysis.read`) for reports. Ranking (`rank_groups`) takes only *finished* groups, by mean final
val_loss over seeds; pruned, diverged and errored groups are listed below, never ranked: their losses come
from fewer steps and would flatter or punish a shape unfairly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from search_spaces import ConfigError, Schedule, schedule_from_dict
from sweep.core.notices import hook_notices
from sweep.core.status import DIVERGED, ERROR, FINISHED, PRUNED, RUNNING, TUNE_ENDED, UNRANKED_ORDER, GroupStatus
from sweep.stats.seeds import SeedStats, is_finite_number, seed_stats

SEARCH_LABEL = "search"  # the label of a group whose shape the searcher proposed (baselines carry their preset)


@dataclass(frozen=True)
class GroupOutcome:
    """Where one seed group ended: its state and each seed's last val_loss / val_bpb.

    `label` is the baseline preset name, or "search" for a shape proposed by the searcher. The rest is what
    the source knew: `config` (the Tune trial config, from Tune), `run_id`, `seed_runs` and `schedule` (the
    MLflow group run, its seed runs and the schedule parsed back from its params, from MLflow).
    """

    group_id: str
    label: str
    status: GroupStatus
    step: int
    final_val_loss: Mapping[str, float] = field(default_factory=dict)
    final_val_bpb: Mapping[str, float] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    seed_runs: Mapping[str, str] = field(default_factory=dict)
    schedule: Schedule | None = None
    # Kind -> why, when the script ignored its seed or the schedule (`sweep.core.notices`): no verdict then.
    notices: Mapping[str, str] = field(default_factory=dict)

    def stats(self, metric: str = "val_loss") -> SeedStats | None:
        """Seed statistics of the final `metric` ("val_loss" or "val_bpb"); None without finite values."""
        values = [v for v in self.finals(metric).values() if is_finite_number(v)]
        return seed_stats(values) if values else None

    def finals(self, metric: str = "val_loss") -> Mapping[str, float]:
        """Seed -> last reported `metric` ("val_loss" or "val_bpb")."""
        return self.final_val_loss if metric == "val_loss" else self.final_val_bpb

    @property
    def is_baseline(self) -> bool:
        """Baseline groups carry their preset's name as label; searched shapes carry "search"."""
        return self.label != SEARCH_LABEL

    @property
    def finished(self) -> bool:
        """Finished with at least one finite final val_loss: the groups that are ranked."""
        return self.status == FINISHED and self.stats() is not None

    @property
    def ended(self) -> bool:
        return self.status != RUNNING

    @property
    def mean_val_loss(self) -> float:
        stats = self.stats()
        return stats.mean if stats is not None else math.inf

    @property
    def description(self) -> str:
        """The group's shape in words (`Schedule.describe`), from whichever source knew the schedule."""
        if self.schedule is not None:
            return self.schedule.describe()
        return describe_config(self.config, self.label)

    @property
    def name(self) -> str:
        """How tables and plots name the group: the shape in words with the group id as a suffix,
        ``wsd_sqrt (a1b2c3)`` or ``wsd: warmup 2% lin, hold 70%, cos -> 0.1 (d4e5f6)``."""
        return f"{self.description} ({self.group_id})"



def group_label(config: Mapping[str, Any]) -> str:
    """The baseline preset name of a group's trial config, else "search"."""
    baseline = config.get("baseline")
    return str(baseline) if baseline else SEARCH_LABEL


def describe_config(config: Mapping[str, Any], fallback: str | None = None) -> str:
    """The shape of a group's trial config in words; `fallback` (default: its label) when it has none."""
    schedule = config.get("schedule")
    if isinstance(schedule, Mapping):
        try:
            return schedule_from_dict(dict(schedule)).describe()
        except ConfigError:
            pass  # an unparsable schedule is reported where it is used; a label must not fail
    return fallback if fallback is not None else group_label(config)


def group_status(last_result: Mapping[str, Any] | None, errored: bool, ended: bool) -> GroupStatus:
    """The state of a group from its last result.

    A group that ended with `status == "running"` was stopped by the scheduler (ASHA): pruned.
    """
    reported = (last_result or {}).get("status")
    if reported == FINISHED:
        return FINISHED
    if reported == DIVERGED:
        return DIVERGED
    if errored:
        return ERROR
    return PRUNED if ended else RUNNING


def outcome_from_result(
    group_id: str, config: Mapping[str, Any], last_result: Mapping[str, Any] | None, errored: bool, ended: bool
) -> GroupOutcome:
    """A `GroupOutcome` from a group trial's config and last reported result (contract: "Sweep trials")."""
    result = last_result or {}
    per_seed = result.get("per_seed") or {}
    return GroupOutcome(
        group_id=group_id,
        label=group_label(config),
        status=group_status(result, errored, ended),
        step=int(result.get("step", 0) or 0),
        final_val_loss={str(s): v["val_loss"] for s, v in per_seed.items() if "val_loss" in v},
        final_val_bpb={str(s): v["val_bpb"] for s, v in per_seed.items() if "val_bpb" in v},
        config=dict(config),
        notices=hook_notices(per_seed),
    )


def outcome_from_trial(trial: Any) -> GroupOutcome:
    """A `GroupOutcome` from a Tune `Trial` (live in a callback, or read back from Tune's saved state)."""
    status = str(trial.status)
    return outcome_from_result(str(trial.trial_id), trial.config or {}, trial.last_result,
                               errored=status == "ERROR", ended=status in TUNE_ENDED)


def outcomes_from_result_grid(grid: Iterable[Any]) -> list[GroupOutcome]:
    """Outcomes of every group in a Tune `ResultGrid` (all of its trials have ended)."""
    outcomes = []
    for result in grid:
        metrics = result.metrics or {}
        group_id = str(metrics.get("trial_id") or getattr(result, "path", "?"))
        outcomes.append(outcome_from_result(group_id, result.config or {}, metrics, result.error is not None, True))
    return outcomes


@dataclass(frozen=True)
class RankedGroup:
    """A finished group's place in the ranking with its final val_loss and val_bpb over seeds."""

    rank: int
    group: GroupOutcome
    loss: SeedStats
    bpb: SeedStats | None


def rank_groups(groups: Sequence[GroupOutcome]) -> tuple[list[RankedGroup], list[GroupOutcome]]:
    """Finished groups ranked by mean final val_loss (ties by group id), and the rest, never ranked.

    The unranked come pruned first, then diverged, errored and still running, each by group id.
    """
    scored = []
    for g in groups:
        loss = g.stats("val_loss") if g.status == FINISHED else None
        if loss is not None:
            scored.append((loss.mean, g.group_id, g, loss))
    scored.sort(key=lambda item: (item[0], item[1]))
    ranked = [RankedGroup(rank=i, group=g, loss=loss, bpb=g.stats("val_bpb"))
              for i, (_, _, g, loss) in enumerate(scored, start=1)]
    ranked_ids = {r.group.group_id for r in ranked}
    order = {s: i for i, s in enumerate(UNRANKED_ORDER)}
    unranked = sorted((g for g in groups if g.group_id not in ranked_ids),
                      key=lambda g: (order.get(g.status, len(order)), g.group_id))
    return ranked, unranked
