"""Live sweep progress in the terminal and the final leaderboard of seed groups.

Progress is a Tune `Callback` rather than a `ProgressReporter`: Ray 2.60's default output engine
ignores custom reporters (unless RAY_AIR_NEW_OUTPUT=0), while callbacks always run. It prints one line
per group event (started, stopped by ASHA, finished, diverged, failed with the reason) and a view of the
running groups (shape in words, step / horizon, val_loss, tokens/s, ETA). On a terminal that view is a live
table redrawn in place (rich), the events scrolling above it; elsewhere (CI, `ray job logs`, a pipe) it is
plain lines at most every `interval_s`, with no control codes. Run the Tuner with `verbose=0` so Tune's own
tables do not interleave.

It also prints a warning, once per group and kind, when a group's results show that the script ignored its
seed or the schedule (`sweep.core.notices`): the report then makes no verdict on that group, and the user
should know while the sweep still runs, not after it.

The leaderboard is the text form of the one ranking (`sweep.core.outcome.rank_groups`): finished groups
by mean final val_loss over seeds, the rest listed below, never ranked.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterable

from ray.tune import Callback

from sweep.core.notices import SCHEDULE_IGNORED, TwinCurves, result_notices
from sweep.core.outcome import GroupOutcome, describe_config, outcome_from_result, outcome_from_trial, rank_groups
from sweep.core.status import PRUNED
from trainable.startup_trace import mark


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
    """Prints group events at once and the running groups live (a terminal) or every `interval_s` (plain).

    `stream` defaults to stdout, looked up at print time (so the callback pickles with the Tuner). `live`:
    True / False forces the live table on or off; None (default) uses it when the stream is a terminal.
    """

    def __init__(self, total_steps: int | None = None, interval_s: float = 30.0, print_leaderboard: bool = True,
                 stream: IO[str] | None = None, live: bool | None = None):
        self.total_steps = total_steps
        self.interval_s = interval_s
        self.print_leaderboard = print_leaderboard
        self.live = live
        self._live: Any = None  # the rich Live view while the experiment runs (never pickled)
        self._first: dict[str, tuple[float, int]] = {}  # group -> (time, step) of its first result, for the ETA
        self._stream = stream
        self._start = time.monotonic()
        self._last_table = 0.0
        self._latest: dict[str, dict[str, Any]] = {}
        self._warned: set[tuple[str, str]] = set()  # (group, kind) already printed
        self._twins = TwinCurves(total_steps)
        self._described: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stream"] = None  # open files do not pickle; stdout is found again after a restore
        state["_live"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A sweep started by an older version resumes with this one: its pickled callback lacks later fields.
        self.__dict__.update(state)
        defaults = {"live": None, "_live": None, "_first": {}, "_warned": set(), "_described": {}}
        for key, value in defaults.items():
            self.__dict__.setdefault(key, value)
        if "_twins" not in self.__dict__:
            self._twins = TwinCurves(self.total_steps)

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        elapsed = time.monotonic() - self._start
        for line in text.splitlines():
            if self._live is not None:
                # Above the live view; as plain text (a "[sweep ...]" prefix is not rich markup).
                self._live.console.print(f"[sweep {elapsed:7.1f}s] {line}", markup=False, highlight=False,
                                         soft_wrap=True)
            else:
                print(f"[sweep {elapsed:7.1f}s] {line}", file=stream)
        stream.flush()

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()
        self._last_table = self._start
        stream = self._stream or sys.stdout
        if self.live if self.live is not None else stream.isatty():
            from rich.console import Console
            from rich.live import Live

            console = Console(file=stream, force_terminal=True if self.live else None)
            self._live = Live(console=console, refresh_per_second=2, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def _refresh(self, trials: list) -> None:
        if self._live is not None:
            self._live.update(self.live_view(trials), refresh=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        mark("trial_started", trial=trial.trial_id)  # Tune has placed the trial (start-up benchmark)
        seeds = trial.config.get("seeds", [])
        self._print(f"start  {trial.trial_id} ({describe_config(trial.config)}) seeds {list(seeds)}")
        self._refresh(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._latest[trial.trial_id] = {"step": result.get("step"),
                                        "val_loss": result.get("val_loss"), "tokens_per_s": result.get("tokens_per_s")}
        self._first.setdefault(trial.trial_id, (time.monotonic(), int(result.get("step", 0) or 0)))
        self._warn_ignored_inputs(trial, result)
        if self._live is not None:
            self._refresh(trials)
            return
        now = time.monotonic()
        if now - self._last_table >= self.interval_s:
            self._last_table = now
            self._print(self.table(trials))

    def _warn_ignored_inputs(self, trial: Any, result: dict) -> None:
        group = str(trial.trial_id)
        self._described.setdefault(group, describe_config(trial.config))
        for kind, why in result_notices(result).items():
            self._warn(group, kind, why)
        twins = self._twins.add(group, trial.config.get("schedule"), int(result.get("step", 0) or 0),
                                result.get("per_seed") or {})
        for a, b in [(group, t) for t in twins] + [(t, group) for t in twins]:
            self._warn(a, SCHEDULE_IGNORED, f"it reported exactly the same val_loss on every seed as {b}, whose "
                                            "schedule differs: the script ignores the schedule")

    def _warn(self, group: str, kind: str, why: str) -> None:
        if (group, kind) not in self._warned:
            self._warned.add((group, kind))
            self._print(f"WARNING {group} ({self._described.get(group, '')}): {kind}: {why}; the report makes no "
                        "verdict on this group")

    def _eta(self, trial_id: str, step: int | None) -> str:
        """Time left for a group at its pace since its first result (restores and queueing excluded)."""
        first = self._first.get(trial_id)
        if first is None or step is None or not self.total_steps or step <= first[1]:
            return "-"
        left = (self.total_steps - step) * (time.monotonic() - first[0]) / (step - first[1])
        return f"{left / 60:.0f} min" if left >= 600 else f"{left:.0f} s"

    def _rows(self, trials: list) -> tuple[str, list[tuple[str, ...]]]:
        """A summary of group states and one row per running group: id, step, val_loss, tok/s, ETA, shape."""
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        total = f"/{self.total_steps}" if self.total_steps else ""
        rows = []
        for t in (t for t in trials if t.status == "RUNNING"):
            last = self._latest.get(t.trial_id, {})
            step = last.get("step")
            rows.append((str(t.trial_id), f"{step if step is not None else '-'}{total}", _fmt(last.get("val_loss")),
                         _fmt(last.get("tokens_per_s"), 0), self._eta(t.trial_id, step), describe_config(t.config)))
        return f"groups: {summary}", rows

    def table(self, trials: list) -> str:
        """Running groups with their step, mean val_loss, throughput and ETA, plus a count of the rest."""
        summary, rows = self._rows(trials)
        lines = [summary]
        for gid, step, loss, tps, eta, shape in rows:
            lines.append(f"  {gid} step {step}  val_loss {loss}  tok/s {tps}  eta {eta}  {shape}")
        return "\n".join(lines)

    def live_view(self, trials: list) -> Any:
        """The live table of running groups (a rich renderable)."""
        from rich.table import Table

        summary, rows = self._rows(trials)
        view = Table(title=f"{summary}  ({time.monotonic() - self._start:.0f} s)", title_justify="left",
                     box=None, header_style="bold", pad_edge=False)
        for name, justify in (("group", "left"), ("step", "right"), ("val_loss", "right"), ("tok/s", "right"),
                              ("eta", "right"), ("shape", "left")):
            view.add_column(name, justify=justify, no_wrap=name != "shape")
        for row in rows:
            view.add_row(*row)
        return view

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune calls this before it marks the trial TERMINATED: the trial has ended whatever its status says.
        outcome = outcome_from_result(trial.trial_id, trial.config, trial.last_result, errored=False, ended=True)
        loss = outcome.stats("val_loss")
        detail = "" if loss is None else f" val_loss {_fmt(loss.mean)}" + (
            "" if math.isnan(loss.std) else f" ± {_fmt(loss.std)} (std, {loss.n} seeds)")
        what = f"stopped by ASHA at step {outcome.step}" if outcome.status == PRUNED else \
            f"{outcome.status} at step {outcome.step}"
        self._print(f"end    {trial.trial_id} ({outcome.description}) {what}{detail}")
        self._refresh(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Never hidden: the reason (with the script's or worker's log it names) and where the whole trace is.
        self._print(f"failed {trial.trial_id} ({describe_config(trial.config)}): {error_reason(trial)}\n"
                    f"       trace: {trial.error_file or trial.local_path or 'the trial folder'}")
        self._refresh(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if not self.print_leaderboard:
            return
        self._print(leaderboard([outcome_from_trial(t) for t in trials]))


def error_reason(trial: Any, limit: int = 600) -> str:
    """The reason a group trial failed, in one paragraph: from its error file, the innermost line that names
    an error of ours (a script's failure names its rank and log) or else the last line of the trace."""
    text = ""
    try:
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    except OSError:
        pass
    if not text:
        return "no error text was saved; see the trial folder"
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]
    ours = [line for line in lines if line.split(":", 1)[0].rsplit(".", 1)[-1] in _OUR_ERRORS]
    reason = (ours or lines)[-1]
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


# Errors raised by this project's code whose message says what went wrong (innermost first).
_OUR_ERRORS = ("ScriptError", "ConfigError", "RunStopped")
