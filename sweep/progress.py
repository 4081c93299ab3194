"""Live sweep progress in the terminal and the final leaderboard of seed groups.

Progress is a Tune `Callback` rather than a `ProgressReporter`: Ray 2.60's default output engine
ignores custom reporters (unless RAY_AIR_NEW_OUTPUT=0), while callbacks always run. It prints one line
when a group starts or ends and, at most every `interval_s`, a short table of the running groups, so a
CI log stays readable. Run the Tuner with `verbose=0` so Tune's own tables do not interleave.

The leaderboard ranks only *finished* groups, by mean final val_loss over seeds; pruned, diverged and
errored groups are listed below it, never ranked: their losses come from fewer steps and would flatter
or punish a shape unfairly. `leaderboard()` takes `GroupOutcome`s, built from Tune trials or results
here, or from the MLflow store by `sweep.mlflow_tracking.groups_from_mlflow`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Mapping

from ray.tune import Callback

from sweep.stats import SeedStats, seed_stats

# Group states, in the order the unranked ones are listed.
FINISHED, PRUNED, DIVERGED, ERROR, RUNNING = "finished", "pruned", "diverged", "error", "running"
_UNRANKED_ORDER = (PRUNED, DIVERGED, ERROR, RUNNING)


@dataclass(frozen=True)
class GroupOutcome:
    """Where one seed group ended: its state and each seed's last val_loss / val_bpb.

    `label` is the baseline preset name, or "search" for a shape proposed by the searcher.
    """

    group_id: str
    label: str
    status: str
    step: int
    final_val_loss: Mapping[str, float] = field(default_factory=dict)
    final_val_bpb: Mapping[str, float] = field(default_factory=dict)

    def stats(self, metric: str = "val_loss") -> SeedStats | None:
        """Seed statistics of the final `metric` ("val_loss" or "val_bpb"); None without finite values."""
        source = self.final_val_loss if metric == "val_loss" else self.final_val_bpb
        values = [v for v in source.values() if _finite(v)]
        return seed_stats(values) if values else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def group_label(config: Mapping[str, Any]) -> str:
    """The baseline preset name of a group's trial config, else "search"."""
    baseline = config.get("baseline")
    return str(baseline) if baseline else "search"


def group_status(last_result: Mapping[str, Any] | None, errored: bool, ended: bool) -> str:
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
    )


def groups_from_result_grid(grid: Iterable[Any]) -> list[GroupOutcome]:
    """Outcomes of every group in a Tune `ResultGrid` (all of its trials have ended)."""
    outcomes = []
    for result in grid:
        metrics = result.metrics or {}
        group_id = str(metrics.get("trial_id") or getattr(result, "path", "?"))
        outcomes.append(outcome_from_result(group_id, result.config or {}, metrics, result.error is not None, True))
    return outcomes


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def leaderboard(groups: Iterable[GroupOutcome], title: str = "Leaderboard") -> str:
    """A plain-text table: finished groups ranked by mean final val_loss, then the unranked ones."""
    groups = list(groups)
    ranked = []
    for g in groups:
        loss = g.stats("val_loss")
        if g.status == FINISHED and loss is not None:
            ranked.append((loss.mean, g.group_id, g, loss))
    ranked.sort(key=lambda item: (item[0], item[1]))
    ranked_ids = {g.group_id for _, _, g, _ in ranked}

    header = f"{'rank':>4}  {'group':<22} {'label':<18} {'seeds':>5} {'val_loss':>9} {'std':>8} " \
             f"{'95% CI':>19} {'val_bpb':>8} {'step':>7}"
    lines = [f"{title} ({len(ranked)} finished of {len(groups)} groups; lower val_loss is better)", header]
    for rank, (_, _, g, loss) in enumerate(ranked, start=1):
        bpb = g.stats("val_bpb")
        ci = "n/a" if math.isnan(loss.ci_low) else f"[{loss.ci_low:.4f}, {loss.ci_high:.4f}]"
        lines.append(
            f"{rank:>4}  {g.group_id:<22} {g.label:<18} {loss.n:>5} {loss.mean:>9.4f} {_fmt(loss.std):>8} "
            f"{ci:>19} {_fmt(bpb.mean if bpb else None):>8} {g.step:>7}"
        )
    if not ranked:
        lines.append("   (no finished group)")

    unranked = [g for g in groups if g.group_id not in ranked_ids]
    if unranked:
        lines.append("Not ranked (stopped early or failed; losses are not comparable):")
        order = {s: i for i, s in enumerate(_UNRANKED_ORDER)}
        for g in sorted(unranked, key=lambda g: (order.get(g.status, len(order)), g.group_id)):
            loss = g.stats("val_loss")
            lines.append(
                f"{'-':>4}  {g.group_id:<22} {g.label:<18} {g.status:<9} at step {g.step:<7} "
                f"last val_loss {_fmt(loss.mean if loss else None)}"
            )
    return "\n".join(lines)


class SweepProgress(Callback):
    """Prints group starts/ends at once and a table of running groups at most every `interval_s`.

    `stream` defaults to stdout, looked up at print time (so the callback pickles with the Tuner).
    """

    def __init__(self, total_steps: int | None = None, interval_s: float = 30.0, print_leaderboard: bool = True,
                 stream: IO[str] | None = None):
        self.total_steps = total_steps
        self.interval_s = interval_s
        self.print_leaderboard = print_leaderboard
        self._stream = stream
        self._start = time.monotonic()
        self._last_table = 0.0
        self._latest: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stream"] = None  # open files do not pickle; stdout is found again after a restore
        return state

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        elapsed = time.monotonic() - self._start
        for line in text.splitlines():
            print(f"[sweep {elapsed:7.1f}s] {line}", file=stream)
        stream.flush()

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()
        self._last_table = self._start

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        seeds = trial.config.get("seeds", [])
        self._print(f"start  {trial.trial_id} ({group_label(trial.config)}) seeds {list(seeds)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._latest[trial.trial_id] = {"label": group_label(trial.config), "step": result.get("step"),
                                        "val_loss": result.get("val_loss"), "tokens_per_s": result.get("tokens_per_s")}
        now = time.monotonic()
        if now - self._last_table >= self.interval_s:
            self._last_table = now
            self._print(self.table(trials))

    def table(self, trials: list) -> str:
        """Running groups with their step, mean val_loss and throughput, plus a count of the rest."""
        running = [t for t in trials if t.status == "RUNNING"]
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        lines = [f"groups: {summary}"]
        total = f"/{self.total_steps}" if self.total_steps else ""
        for t in running:
            last = self._latest.get(t.trial_id, {})
            step = last.get("step")
            lines.append(
                f"  {t.trial_id:<22} {group_label(t.config):<18} step {step if step is not None else '-'}{total}"
                f"  val_loss {_fmt(last.get('val_loss'))}  tok/s {_fmt(last.get('tokens_per_s'), 0)}"
            )
        return "\n".join(lines)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = outcome_from_result(trial.trial_id, trial.config, trial.last_result, errored=False, ended=True)
        loss = outcome.stats("val_loss")
        detail = "" if loss is None else f" val_loss {_fmt(loss.mean)}" + (
            "" if math.isnan(loss.std) else f" ± {_fmt(loss.std)} (std, {loss.n} seeds)")
        self._print(f"end    {trial.trial_id} ({outcome.label}) {outcome.status} at step {outcome.step}{detail}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"error  {trial.trial_id} ({group_label(trial.config)}): see {trial.local_path or 'trial logs'}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if not self.print_leaderboard:
            return
        outcomes = [outcome_from_result(t.trial_id, t.config, t.last_result, errored=t.status == "ERROR",
                                        ended=t.status in ("TERMINATED", "ERROR")) for t in trials]
        self._print(leaderboard(outcomes))
