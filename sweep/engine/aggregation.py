"""Turning the reports of a group's seed runs into group results for Tune (pure Python, no Ray).

A group result exists for an eval step once *every* seed has reported that step; it carries the means over
seeds (float64 sums), the summed throughput, a `status` and each seed's own values under `per_seed`, as
fixed by the "Sweep trials" section of docs/contracts.md. Steps come out strictly increasing, which keeps
`step` monotonic for ASHA even when seeds resume from checkpoints at different steps (a step that some seed
skipped because it resumed past it is dropped, since it can never be complete).

The final result is never produced by `add`: the group trial asks for it with `finish` only after every
seed's `fit()` has returned, so it cannot race the seeds' last reports.

Every result also carries `rung_loss`, what ASHA compares (`sweep.engine.rung_metrics`): the chosen rung metric
at a rung, the raw mean val loss between rungs, the final mean val loss (or the penalty) at the end.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from sweep.core.status import GroupStatus
from sweep.engine.rung_metrics import RUNG_KEY, RungScorer

# Results carry a group status as its plain string (Tune logs them to JSON; MLflow and tests read them back).
RUNNING, FINISHED, DIVERGED = GroupStatus.RUNNING.value, GroupStatus.FINISHED.value, GroupStatus.DIVERGED.value

_MEAN_KEYS = ("val_loss", "val_bpb", "train_loss", "lr", "lr_multiplier")
_PER_SEED_KEYS = ("val_loss", "val_bpb", "train_loss", "lr", "tokens_per_s", "mfu", "step", "status",
                  "val_loss_cooldown", "probe_steps_run", "seed_read", "schedule_read")


def train_run_name(trial_id: str, seed: int | str) -> str:
    """The run name of one seed of a group (`per_seed[...]["train_run"]`; the Ray Train run name of a GPT
    seed run): fixed, so a restored trial resumes the same run."""
    return f"{trial_id}-seed{seed}"


def _mean(values: list[float]) -> float:
    # math.fsum: an exactly rounded float64 sum, so the mean does not depend on seed order.
    return math.fsum(values) / len(values) if values else float("nan")


class GroupAggregator:
    """Collects (seed, metrics) reports and yields the group results that became complete."""

    def __init__(self, seeds: list[int], train_runs: Mapping[int, str], penalty: float | None = None,
                 scorer: RungScorer | None = None):
        self.seeds = [str(s) for s in seeds]
        self.scorer = scorer or RungScorer()
        self.train_runs = {str(k): v for k, v in train_runs.items()}
        self.penalty = penalty
        self.reports: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in self.seeds}
        self.final: dict[str, dict[str, Any]] = {}
        self.last_emitted = -1
        self.diverged_seeds: list[str] = []

    @property
    def diverged(self) -> bool:
        """A seed diverged: the whole group fails (its result carries the penalty)."""
        return bool(self.diverged_seeds)

    def add(self, seed: int | str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Record one seed report; return the (non-final) group results it completed, oldest first."""
        s = str(seed)
        if s not in self.reports:
            raise KeyError(f"report from seed {s}, which is not in this group ({', '.join(self.seeds)})")
        m = dict(metrics)
        self.reports[s][int(m["step"])] = m
        if m.get("final") or "status" in m:
            self.final[s] = m
            if m.get("status") == DIVERGED and s not in self.diverged_seeds:
                self.diverged_seeds.append(s)
        return [] if self.diverged else self._ready()

    def _ready(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        steps = sorted({st for per in self.reports.values() for st in per if st > self.last_emitted})
        for step in steps:
            have = [step in self.reports[s] for s in self.seeds]
            if all(have):
                if all(self.reports[s][step].get("final") for s in self.seeds):
                    break  # the final result waits for finish()
                result = self._aggregate({s: self.reports[s][step] for s in self.seeds}, step, RUNNING)
                result[RUNG_KEY] = self.scorer.score(step, self.last_emitted, result.get("val_loss", math.nan), self.reports)
                out.append(result)
                self.last_emitted = step
                continue
            # A seed that has reported past `step` without reporting it resumed beyond it: drop the step.
            skipped = any(not h and self.reports[s] and max(self.reports[s]) > step for s, h in zip(self.seeds, have))
            if not skipped:
                break
        return out

    def _aggregate(self, per_seed: Mapping[str, Mapping[str, Any]], step: int, status: str) -> dict[str, Any]:
        rows = [per_seed[s] for s in self.seeds if s in per_seed]
        result: dict[str, Any] = {"step": int(step), "status": status}
        result["tokens"] = max(int(r.get("tokens", 0)) for r in rows)
        for key in _MEAN_KEYS:
            values = [float(r[key]) for r in rows if key in r]
            if values:
                result[key] = _mean(values)
        result["tokens_per_s"] = math.fsum(float(r.get("tokens_per_s", 0.0)) for r in rows)
        mfus = [float(r["mfu"]) for r in rows if r.get("mfu") is not None]
        if mfus and len(mfus) == len(rows):
            result["mfu"] = _mean(mfus)
        result["per_seed"] = {
            s: {
                **{k: per_seed[s][k] for k in _PER_SEED_KEYS if k in per_seed[s]},
                "status": per_seed[s].get("status", RUNNING),
                "train_run": self.train_runs.get(s, ""),
            }
            for s in self.seeds
            if s in per_seed
        }
        return result

    def diverged_result(self) -> dict[str, Any]:
        """The group's last result when a seed diverged: status `diverged`, `val_loss` = the penalty (NaN
        when none is configured; the searcher then tells Optuna FAIL)."""
        latest = {s: self.final.get(s) or self.reports[s][max(self.reports[s])] for s in self.seeds if self.reports[s]}
        step = max(int(m["step"]) for m in latest.values())
        result = self._aggregate(latest, max(step, self.last_emitted + 1), DIVERGED)
        penalty = float("nan") if self.penalty is None else float(self.penalty)
        result["val_loss"] = result[RUNG_KEY] = penalty
        result["val_bpb"] = float("nan")
        return result

    def finish(self, fallback: Mapping[int | str, Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
        """The group's last result, once every seed run has ended.

        `fallback`: per seed, the last metrics its `fit()` returned, used when that seed's final report did
        not come through the queue. Raises `RuntimeError` when a seed has no final report at all.
        """
        for seed, metrics in (fallback or {}).items():
            s = str(seed)
            if s not in self.final and metrics and (metrics.get("final") or "status" in metrics):
                self.add(s, metrics)
        if self.diverged:
            return self.diverged_result()
        missing = [s for s in self.seeds if s not in self.final]
        if missing:
            raise RuntimeError(f"seed run(s) {', '.join(missing)} ended without a final report")
        step = min(int(self.final[s]["step"]) for s in self.seeds)
        step = max(step, self.last_emitted + 1)  # keep `step` strictly increasing for ASHA
        status = FINISHED if all(self.final[s].get("status") == FINISHED for s in self.seeds) else DIVERGED
        result = self._aggregate(self.final, step, status)
        result[RUNG_KEY] = result.get("val_loss", float("nan"))  # at the end every metric is the final loss
        return result

    # -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a restarted group needs to continue exactly (JSON-able): every report so far and which
        results went out. The simulated group trial stores it with each checkpoint."""
        return {
            "reports": {s: [per[k] for k in sorted(per)] for s, per in self.reports.items()},
            "final": list(self.final),
            "last_emitted": self.last_emitted,
            "diverged_seeds": list(self.diverged_seeds),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Undo of `state_dict` (into an aggregator built with the same seeds)."""
        for s, rows in state["reports"].items():
            self.reports[str(s)] = {int(m["step"]): dict(m) for m in rows}
        self.final = {str(s): self.reports[str(s)][max(self.reports[str(s)])] for s in state["final"]}
        self.last_emitted = int(state["last_emitted"])
        self.diverged_seeds = [str(s) for s in state["diverged_seeds"]]
