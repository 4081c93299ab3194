"""Signs that a training script ignored what the sweep gave it: the seed of a run or the schedule of a group.

A comparison of two shapes means nothing when the script trained its own schedule in both, and a seed group
proves nothing when its seeds are one run repeated. Two kinds of evidence, both pure functions of results:

- what the script said: every `hook.report` carries whether the process read the seed (`hook.seed`, or
  `{seed}` filled into `script.args`) and the schedule (`hook.lr_multiplier...`) as 1.0 / 0.0;
- what the numbers say: the seeds of a group reporting exactly the same val_loss at a step after the first,
  or two groups whose schedules differ before that step reporting exactly the same values on every seed.

The console prints each kind once per group (`sweep.tracking.progress`); the report withholds the verdicts
of such groups (`sweep.analysis.content.input_warnings`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from search_spaces import ConfigError, schedule_from_dict
from sweep.stats.seeds import is_finite_number
from trainable.external.channel import SCHEDULE_READ, SEED_READ

SEED_IGNORED, SCHEDULE_IGNORED = "seed ignored", "schedule ignored"


def hook_notices(per_seed: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Kind -> why, from the flags the seeds' reports carry (`per_seed`: seed -> its latest report). A seed
    without the flags (the built-in trainer, a print-only script) says nothing either way."""
    out: dict[str, str] = {}
    unseeded = sorted(str(s) for s, v in per_seed.items() if _flag(v, SEED_READ) == 0.0)
    if unseeded:
        out[SEED_IGNORED] = (f"the script never read its seed (seed runs {', '.join(unseeded)}): call "
                             "hook.seed(default) where it seeds torch, or put {seed} in script.args")
    # A report before the first update may come before the script asks for its first LR (nanoGPT's eval at 0).
    own_schedule = sorted(str(s) for s, v in per_seed.items()
                          if _flag(v, SCHEDULE_READ) == 0.0 and int(v.get("step", 1) or 0) > 0)
    if own_schedule:
        out[SCHEDULE_IGNORED] = ("the script never called hook.lr_multiplier: it trained its own schedule, not this "
                                 "group's (its own warmup and decay are still in charge)")
    return out


def identical_seeds(per_seed: Mapping[str, Mapping[str, Any]], step: int, metric: str = "val_loss") -> str | None:
    """Why the seeds look ignored, when two or more seeds reported exactly the same `metric` at `step` > 0."""
    values = [v.get(metric) for v in per_seed.values()]
    if step <= 0 or len(values) < 2 or not all(is_finite_number(x) for x in values) or len(set(values)) != 1:
        return None
    return (f"its {len(values)} seeds reported exactly the same {metric} ({values[0]:.6g}) at step {step}: the "
            "script ignores its seed (a hard-coded torch.manual_seed?)")


def result_notices(result: Mapping[str, Any]) -> dict[str, str]:
    """Kind -> why, for one group result (`per_seed` and `step`, as `sweep.engine.aggregation` makes them)."""
    per_seed = result.get("per_seed") or {}
    out = hook_notices(per_seed)
    same = identical_seeds(per_seed, int(result.get("step", 0) or 0))
    if same is not None:
        out[SEED_IGNORED] = same
    return out


class TwinCurves:
    """Finds groups whose schedules differ before a step yet whose seeds reported exactly the same values there:
    the script trains one schedule whatever the sweep gives it.

    `total_steps`: the horizon the schedules are stretched over (None: schedules are compared as written).
    """

    def __init__(self, total_steps: int | None):
        self.total_steps = total_steps
        self._seen: dict[tuple, list[str]] = {}  # (step, every seed's value) -> the groups that reported it
        self._lrs: dict[str, Any] = {}

    def add(self, group_id: str, schedule: Mapping[str, Any] | None, step: int,
            per_seed: Mapping[str, Mapping[str, Any]], metric: str = "val_loss") -> list[str]:
        """Record a group's result; return the other groups that are its twins at this step."""
        values = tuple(sorted((str(s), v.get(metric)) for s, v in per_seed.items()))
        if step <= 0 or not values or not all(is_finite_number(v) for _, v in values):
            return []
        if group_id not in self._lrs:
            self._lrs[group_id] = self._multipliers(schedule)
        key = (int(step), values)
        others = self._seen.setdefault(key, [])
        twins = [g for g in others if g != group_id and self._differ(g, group_id, step)]
        if group_id not in others:
            others.append(group_id)
        return twins

    def _multipliers(self, schedule: Mapping[str, Any] | None) -> Any:
        if not isinstance(schedule, Mapping):
            return None
        try:
            parsed = schedule_from_dict(dict(schedule))
        except ConfigError:
            return None
        return parsed.multipliers(int(self.total_steps)) if self.total_steps else parsed.to_dict()

    def _differ(self, a: str, b: str, step: int) -> bool:
        la, lb = self._lrs.get(a), self._lrs.get(b)
        if la is None or lb is None:
            return False  # an unknown schedule is not evidence
        if isinstance(la, np.ndarray) and isinstance(lb, np.ndarray):
            # Shapes that agree up to `step` (same warmup, decay later) rightly produce the same curve so far.
            return not np.array_equal(la[:step], lb[:step])
        return la != lb


def _flag(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    return float(value) if is_finite_number(value) else None

