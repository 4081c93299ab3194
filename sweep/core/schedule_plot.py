"""Overlay plot of LR schedules, as a PNG: for `sweep schedules plot` and for MLflow artifacts.

Uses matplotlib's object API on an Agg canvas rather than pyplot, so it keeps no global figure state and
is safe to call from worker threads and headless machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from search_spaces import Schedule
from search_spaces.errors import ConfigError


def plot_schedules(named: dict[str, Schedule], total_steps: int, path: str | Path) -> Path:
    """Draw every schedule's multiplier over steps 0..total_steps-1 on one axis; write a PNG to `path`.

    Returns the path written. Parent folders are created.
    """
    if not named:
        raise ConfigError("schedules", "nothing to plot")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError("steps", f"must be an integer >= 1, got {total_steps!r}")
    path = Path(path)
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    axes = figure.add_subplot()
    steps = np.arange(total_steps)
    for label, schedule in named.items():
        axes.plot(steps, schedule.multipliers(total_steps), label=label, linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("LR multiplier (peak = 1)")
    axes.set_title(f"LR schedules over T = {total_steps} steps")
    axes.set_xlim(0, max(total_steps - 1, 1))
    axes.set_ylim(-0.02, 1.05)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    # Fixed margins that fit these labels, not tight_layout(): that lays the figure out by drawing it once more,
    # a quarter of the plot's time, and the sweep draws one per group in its driver loop (benchmarks/driver_scale.py).
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.11, top=0.93)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
