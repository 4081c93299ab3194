"""Live sweep progress in the terminal and the final leaderboard of seed groups.

Progress is a Tune `Callback` rather than a `ProgressReporter`: Ray 2.60's default output engine
ignores custom reporters (unless RAY_AIR_NEW_OUTPUT=0), while callbacks always run. It prints one line
when a group starts or ends and, at most every `interval_s`, a short table of the running groups, so a
CI log stays readable. Run the Tuner with `verbose=0` so Tune's own tables do not interleave.

The leaderboard is the text form of the one ranking (`sweep.core.outcome.rank_groups`): finished groups
by mean final val_loss over seeds, the rest listed below, never ranked.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any, Iterable

from ray.tune import Callback

from sweep.core.outcome import GroupOutcome, describe_config, outcome_from_result, outcome_from_trial, rank_groups


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def leaderboard(groups: Iterable[GroupOutcome], title: str = "Leaderboard") -> str:
    """A plain-text table: finished groups ranked by mean final val_loss, then the unranked ones."""
    groups = list(groups)
    ranked, unranked = rank_groups(groups)
    # The shape in words goes last: its length varies, and the numbers stay aligned before it.
    width = max([len("group")] + [len(g.group_id) for g in groups])
    header = f"{'rank':>4}  {'group':<{width}} {'seeds':>5} {'val_loss':>9} {'std':>8} " \
             f"{'95% CI':>19} {'val_bpb':>8} {'step':>7}  shape"
    lines = [f"{title} ({len(ranked)} finished of {len(groups)} groups; lower val_loss is better)", header]
    for r in ranked:
        g, loss = r.group, r.loss
        ci = "n/a" if math.isnan(loss.ci_low) else f"[{loss.ci_low:.4f}, {loss.ci_high:.4f}]"
        lines.append(
            f"{r.rank:>4}  {g.group_id:<{width}} {loss.n:>5} {loss.mean:>9.4f} {_fmt(loss.std):>8} "
            f"{ci:>19} {_fmt(r.bpb.mean if r.bpb else None):>8} {g.step:>7}  {g.description}"
        )
    if not ranked:
        lines.append("   (no finished group)")
    if unranked:
        lines.append("Not ranked (stopped early or failed; losses are not comparable):")
        for g in unranked:
            loss = g.stats("val_loss")
            lines.append(
                f"{'-':>4}  {g.group_id:<{width}} {g.status:<9} at step {g.step:<7} "
                f"last val_loss {_fmt(loss.mean if loss else None):>7}  {g.description}"
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
        self._print(f"start  {trial.trial_id} ({describe_config(trial.config)}) seeds {list(seeds)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._latest[trial.trial_id] = {"step": result.get("step"),
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
                f"  {t.trial_id} step {step if step is not None else '-'}{total}"
                f"  val_loss {_fmt(last.get('val_loss'))}  tok/s {_fmt(last.get('tokens_per_s'), 0)}"
                f"  {describe_config(t.config)}"
            )
        return "\n".join(lines)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune calls this before it marks the trial TERMINATED: the trial has ended whatever its status says.
        outcome = outcome_from_result(trial.trial_id, trial.config, trial.last_result, errored=False, ended=True)
        loss = outcome.stats("val_loss")
        detail = "" if loss is None else f" val_loss {_fmt(loss.mean)}" + (
            "" if math.isnan(loss.std) else f" ± {_fmt(loss.std)} (std, {loss.n} seeds)")
        self._print(f"end    {trial.trial_id} ({outcome.description}) {outcome.status} at step {outcome.step}{detail}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"error  {trial.trial_id} ({describe_config(trial.config)}): see {trial.local_path or 'trial logs'}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if not self.print_leaderboard:
            return
        self._print(leaderboard([outcome_from_trial(t) for t in trials]))
