"""Val-loss curves of seed groups as PNGs, for `sweep report`: the mean over seeds with a band across them.

Like `sweep.core.schedule_plot`, this draws on an Agg canvas through matplotlib's object API (no pyplot global
state), so it runs headless and from any thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Curve = Sequence[tuple[int, float]]


def mean_band(curves: Mapping[str, Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high) over the steps every seed reported; low/high are the min/max across seeds.

    Only common steps enter, so the mean never mixes a different set of seeds at different steps (a seed
    that stopped early would otherwise make the mean jump). Means are float64 exact sums (`math.fsum`).
    """
    by_seed = [dict(points) for points in curves.values() if points]
    if not by_seed:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    steps = sorted(set.intersection(*(set(d) for d in by_seed)))
    values = [[d[s] for d in by_seed] for s in steps]
    mean = np.array([math.fsum(v) / len(v) for v in values], dtype=np.float64)
    low = np.array([min(v) for v in values], dtype=np.float64)
    high = np.array([max(v) for v in values], dtype=np.float64)
    return np.array(steps, dtype=np.int64), mean, low, high


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _limits(series: Mapping[str, Mapping[str, Curve]]) -> tuple[float, float] | None:
    """A y range from the lowest value to the highest after the first quarter of each curve: the first
    evals (about ln(vocab) at step 0) would otherwise flatten the part where shapes differ."""
    lows, highs = [], []
    for curves in series.values():
        steps, mean, low, high = mean_band(curves)
        if len(steps):
            lows.append(float(low.min()))
            highs.append(float(high[len(steps) // 4:].max()))
    if not lows:
        return None
    lo, hi = min(lows), max(highs)
    pad = max((hi - lo) * 0.05, abs(hi) * 1e-4, 1e-6)
    return lo - pad, hi + pad


def plot_curve_overlay(series: Mapping[str, Mapping[str, Curve]], path: str | Path, metric: str = "val_loss",
                       title: str | None = None) -> Path:
    """Every group's mean curve with its min-max band across seeds on one axis (the later half in focus)."""
    figure = _figure(9, 5)
    axes = figure.add_subplot()
    for label, curves in series.items():
        steps, mean, low, high = mean_band(curves)
        if not len(steps):
            continue
        (line,) = axes.plot(steps, mean, label=f"{label} ({len(curves)} seeds)", linewidth=1.5,
                            marker="o" if len(steps) < 3 else None)
        axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    limits = _limits(series)
    if limits is not None:
        axes.set_ylim(*limits)
    axes.set_xlabel("step")
    axes.set_ylabel(f"{metric} (mean over seeds, band = min-max)")
    axes.set_title(title or f"{metric}: mean over seeds with the range across seeds")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    return _save(figure, path)


def plot_curve_panels(series: Mapping[str, Mapping[str, Curve]], path: str | Path, metric: str = "val_loss",
                      columns: int = 3) -> Path:
    """One panel per group: each seed's curve (thin), their mean (thick) and the min-max band."""
    if not series:
        raise ValueError("no groups to plot")
    rows = math.ceil(len(series) / columns)
    figure = _figure(4.0 * min(columns, len(series)), 3.0 * rows)
    for index, (label, curves) in enumerate(series.items(), start=1):
        axes = figure.add_subplot(rows, min(columns, len(series)), index)
        for seed, points in curves.items():
            if points:
                xs, ys = zip(*points)
                # Seeds are named in the legend only when few: the mean and band carry the message.
                axes.plot(xs, ys, linewidth=0.8, alpha=0.6, label=f"seed {seed}" if len(curves) <= 4 else None,
                          marker="." if len(xs) < 3 else None)
        steps, mean, low, high = mean_band(curves)
        if len(steps):
            axes.fill_between(steps, low, high, color="black", alpha=0.12, linewidth=0)
            axes.plot(steps, mean, color="black", linewidth=1.8, label="mean")
        limits = _limits({label: curves})
        if limits is not None:
            axes.set_ylim(*limits)
        axes.set_title(label, fontsize="small")
        axes.set_xlabel("step", fontsize="small")
        axes.set_ylabel(metric, fontsize="small")
        axes.tick_params(labelsize="x-small")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="xx-small", loc="upper right")
    return _save(figure, path)
