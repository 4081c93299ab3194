"""The confirmation report: does each finalist's gap to each baseline shrink, hold or flip with the horizon?

For every horizon, every finalist is compared with every baseline seed by seed (`sweep.verdicts.
paired_comparison`: the same seeds ran both, so the shared seed effect cancels): the mean paired delta of the
final val_loss (finalist minus baseline; negative = the finalist is better) with its 95 % t-interval. The
report is a markdown table plus a PNG of delta against horizon, and one sentence per pair (`trend_words`).
Downstream (lm-eval) metrics, when there are any, are shown per group as seed means with 95 % intervals.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sweep.stats import seed_stats
from sweep.verdicts import paired_comparison

# Without intervals (one seed): the factor by which |delta| must change to count as shrinking or growing.
SHRINK_BELOW, GROW_ABOVE = 0.5, 2.0


@dataclass(frozen=True)
class DeltaPoint:
    """Finalist minus baseline at one horizon (final val_loss, paired by seed)."""

    finalist: str
    baseline: str
    horizon: str
    factor: float
    steps: int
    n: int
    mean: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """The 95 % interval excludes 0."""
        return self.ci_low > 0.0 or self.ci_high < 0.0


def delta_points(stages: Mapping[str, Sequence[Any]], factors: Mapping[str, float], steps: Mapping[str, int],
                 finalists: Sequence[str], baselines: Sequence[str]) -> list[DeltaPoint]:
    """Every (finalist, baseline, horizon) paired delta. `stages`: horizon label -> the stage's `SweepGroup`s;
    groups are named by `sweep.confirm.group_key`. Pairs where either group did not finish are left out."""
    from sweep.confirm import group_key

    out = []
    for label, groups in stages.items():
        by_key = {group_key(g.config): g for g in groups if g.finished}
        for fin in finalists:
            for base in baselines:
                if fin not in by_key or base not in by_key:
                    continue
                cmp = paired_comparison(by_key[fin].outcome.final_val_loss, by_key[base].outcome.final_val_loss,
                                        names=(fin, base), confidence=0.95)
                out.append(DeltaPoint(fin, base, label, float(factors[label]), int(steps[label]), cmp.n,
                                      cmp.mean_diff, cmp.ci_low, cmp.ci_high))
    return sorted(out, key=lambda p: (p.finalist, p.baseline, p.factor))


def trend_words(points: Sequence[DeltaPoint]) -> str:
    """One sentence on how a pair's delta moves from the shortest to the longest horizon.

    flips: the mean delta changes sign. Otherwise the change of the delta is weighed against its noise: with
    both 95 % intervals known, |delta| "shrinks" or "grows" when the change exceeds the combined half-width
    sqrt(h1^2 + h2^2) (the two horizons ran independent runs), else it "holds"; with single seeds (no
    interval) a change by more than a factor of 2 counts. Whether the longest horizon's interval excludes 0
    is said too.
    """
    points = sorted(points, key=lambda p: p.factor)
    if not points:
        return "no finished pair to compare"
    first, last = points[0], points[-1]
    who = "the finalist" if last.mean < 0 else "the baseline"
    sig = (f"significant at {last.horizon} (95 % CI excludes 0; {who} is better)" if last.significant
           else f"not significant at {last.horizon} (95 % CI includes 0)")
    if len(points) == 1:
        return f"only {first.horizon} finished: delta {first.mean:+.4f}, {sig}"
    if first.mean == 0.0 or last.mean == 0.0 or (first.mean > 0) != (last.mean > 0):
        trend = "flips"
    else:
        halves = [(p.ci_high - p.ci_low) / 2.0 for p in (first, last)]
        change = abs(last.mean) - abs(first.mean)
        if all(math.isfinite(h) for h in halves):
            noise = math.sqrt(halves[0] ** 2 + halves[1] ** 2)
            trend = "holds" if abs(change) <= noise else "shrinks" if change < 0 else "grows"
        else:
            ratio = abs(last.mean) / abs(first.mean)
            trend = "shrinks" if ratio < SHRINK_BELOW else "grows" if ratio > GROW_ABOVE else "holds"
    return (f"the gap {trend} from {first.mean:+.4f} at {first.horizon} to {last.mean:+.4f} at {last.horizon}; "
            f"{sig}")


def _ci(p: DeltaPoint) -> str:
    if math.isnan(p.ci_low):
        return f"{p.mean:+.4f} (n={p.n}, no CI)"
    return f"{p.mean:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}]"


def _stat_cell(values: Sequence[float], digits: int = 4) -> str:
    if not values:
        return "-"
    s = seed_stats(values)
    if s.n == 1:
        return f"{s.mean:.{digits}f} (n=1)"
    return f"{s.mean:.{digits}f} ± {s.half_width:.{digits}f} (n={s.n})"


def render_markdown(sweep_name: str, points: Sequence[DeltaPoint], finalists: Mapping[str, str],
                    horizons: Sequence[str], steps: Mapping[str, int], seeds: Sequence[int],
                    losses: Mapping[str, Mapping[str, Sequence[float]]],
                    downstream: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                    downstream_horizon: str | None = None, plot_name: str = "deltas.png") -> str:
    """The report. `finalists`: finalist key -> a description; `losses`: horizon -> group -> per-seed final
    val_loss; `downstream`: group -> metric -> per-seed values (at `downstream_horizon`)."""
    lines = [f"# Confirmation of sweep `{sweep_name}`", "",
             f"Seeds (the same for every group and horizon): {', '.join(str(s) for s in seeds)}. "
             f"Horizons: " + ", ".join(f"{h} ({steps[h]} steps)" for h in horizons) + ". No early stopping.", "",
             "## Finalists", "", "| finalist | schedule (sweep mean final val_loss) |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in finalists.items()]
    groups = sorted({g for h in losses.values() for g in h})
    lines += ["", "## Final val_loss (seed mean ± 95 % CI half-width)", "",
              "| group | " + " | ".join(horizons) + " |", "| --- |" + " --- |" * len(horizons)]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(_stat_cell(losses.get(h, {}).get(g, [])) for h in horizons) + " |")
    lines += ["", "## Paired delta, finalist − baseline (final val_loss; negative: the finalist is better), "
              "mean [95 % CI]", "", "| finalist | baseline | " + " | ".join(horizons) + " |",
              "| --- | --- |" + " --- |" * len(horizons)]
    pairs = sorted({(p.finalist, p.baseline) for p in points})
    for fin, base in pairs:
        cells = {p.horizon: _ci(p) for p in points if (p.finalist, p.baseline) == (fin, base)}
        lines.append(f"| {fin} | {base} | " + " | ".join(cells.get(h, "-") for h in horizons) + " |")
    lines += ["", f"![delta against horizon]({plot_name})", "", "## In words", ""]
    for fin, base in pairs:
        lines.append(f"- {fin} vs {base}: "
                     + trend_words([p for p in points if (p.finalist, p.baseline) == (fin, base)]) + ".")
    if not pairs:
        lines.append("- no finalist and baseline both finished at any horizon.")
    if downstream:
        metrics = sorted({m for per in downstream.values() for m in per})
        lines += ["", f"## Downstream evaluation (lm-eval, final checkpoints at {downstream_horizon}; seed mean ± "
                  "95 % CI half-width)", "", "| group | " + " | ".join(metrics) + " |",
                  "| --- |" + " --- |" * len(metrics)]
        for g in sorted(downstream):
            lines.append(f"| {g} | " + " | ".join(_stat_cell(downstream[g].get(m, [])) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def plot_deltas(points: Sequence[DeltaPoint], path: str | Path, title: str = "") -> Path:
    """Delta against horizon factor (log2 axis), one panel per baseline, one line per finalist, 95 % CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = sorted({p.baseline for p in points}) or ["(none)"]
    fig, axes = plt.subplots(1, len(baselines), figsize=(5 * len(baselines), 4), squeeze=False)
    for ax, base in zip(axes[0], baselines):
        for fin in sorted({p.finalist for p in points if p.baseline == base}):
            ps = sorted((p for p in points if p.baseline == base and p.finalist == fin), key=lambda p: p.factor)
            xs, ys = [p.factor for p in ps], [p.mean for p in ps]
            err = [[0.0 if math.isnan(p.ci_low) else p.mean - p.ci_low for p in ps],
                   [0.0 if math.isnan(p.ci_high) else p.ci_high - p.mean for p in ps]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=fin)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        factors = sorted({p.factor for p in points})
        if factors:
            ax.set_xticks(factors, [f"{f:g}x" for f in factors])
        ax.set_xlabel("horizon (x the sweep's)")
        ax.set_ylabel("Δ final val_loss vs baseline (nats)")
        ax.set_title(f"vs {base}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_key(text: str) -> str:
    """A name MLflow accepts as part of a metric key (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^\w.\-/ ]", "_", text)


def write_report(out_dir: str | Path, markdown: str, points: Sequence[DeltaPoint], title: str) -> dict[str, Path]:
    """`report.md`, `deltas.png` and `deltas.json` in `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "plot": out / "deltas.png", "json": out / "deltas.json"}
    paths["report"].write_text(markdown)
    plot_deltas(points, paths["plot"], title)
    paths["json"].write_text(json.dumps([asdict(p) for p in points], indent=1))
    return paths


def log_report(tracking_uri: str, run_id: str, paths: Mapping[str, Path], points: Sequence[DeltaPoint]) -> None:
    """The report files under `confirm/` on the sweep run, and each delta as a metric at step = horizon steps."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for path in paths.values():
        client.log_artifact(run_id, str(path), artifact_path="confirm")
    now = int(time.time() * 1000)
    metrics = []
    for p in points:
        key = metric_key(f"confirm.delta.{p.finalist}.vs.{p.baseline}")
        metrics.append(Metric(key, p.mean, now, p.steps))
        if not math.isnan(p.ci_low):
            metrics += [Metric(f"{key}.ci95_low", p.ci_low, now, p.steps),
                        Metric(f"{key}.ci95_high", p.ci_high, now, p.steps)]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
