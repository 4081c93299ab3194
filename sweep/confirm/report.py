"""The confirmation report: does each finalist's gap to each baseline shrink, hold or flip with the horizon?

For every horizon, every finalist is compared with every baseline seed by seed (`sweep.stats.verdicts.
paired_comparison`: the same seeds ran both, so the shared seed effect cancels): the mean paired delta of the
final val_loss (finalist minus baseline; negative = the finalist is better). All of these comparisons,
finalists x baselines x horizons, are one family: each verdict is called on its p-value adjusted over the
family, at the sweep's `verdict.alpha` with its `verdict.correction` (`sweep.stats.verdicts.family_verdicts`), and
each interval is at the level of its own test. The words per pair (`trend_words`) come from those corrected
verdicts. The report is a markdown table plus a PNG of delta against horizon. Downstream (lm-eval) metrics,
when there are any, are shown per group as seed means with 95 % intervals.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sweep.confirm.plan import group_key
from sweep.stats.seeds import seed_stats
from sweep.stats.verdicts import (BETTER, CALLED, CORRECTIONS, DEFAULT_ALPHA, DEFAULT_CORRECTION, NO_VERDICT, WORSE,
                                  family_verdicts, paired_comparison)


@dataclass(frozen=True)
class DeltaPoint:
    """Finalist minus baseline at one horizon (final val_loss, paired by seed), with its family verdict.

    `confidence` is the level of the interval, the one that matches the test (see `sweep.stats.verdicts`);
    `reason` says why there is no verdict when `verdict` is "no verdict"."""

    finalist: str
    baseline: str
    horizon: str
    factor: float
    steps: int
    n: int
    mean: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95
    p_value: float = math.nan
    adjusted_p: float = math.nan
    verdict: str = NO_VERDICT
    reason: str = ""
    family_size: int = 1
    correction: str = "none"

    @property
    def significant(self) -> bool:
        """A verdict ("better" or "worse") was called on the family-adjusted p-value."""
        return self.verdict in CALLED


def delta_points(stages: Mapping[str, Sequence[Any]], factors: Mapping[str, float], steps: Mapping[str, int],
                 finalists: Sequence[str], baselines: Sequence[str], alpha: float = DEFAULT_ALPHA,
                 correction: str = DEFAULT_CORRECTION) -> list[DeltaPoint]:
    """Every (finalist, baseline, horizon) paired delta, its verdict called over all of them as one family.

    `stages`: horizon label -> the stage's `GroupOutcome`s; groups are named by `sweep.confirm.group_key`.
    Pairs where either group did not finish are left out."""
    keys, comparisons = [], []
    for label, groups in stages.items():
        by_key = {group_key(g.config): g for g in groups if g.finished}
        for fin in finalists:
            for base in baselines:
                if fin not in by_key or base not in by_key:
                    continue
                comparisons.append(paired_comparison(by_key[fin].final_val_loss,
                                                     by_key[base].final_val_loss, names=(fin, base),
                                                     alpha=alpha))
                keys.append(label)
    out = []
    for label, c in zip(keys, family_verdicts(comparisons, alpha, correction)):
        out.append(DeltaPoint(c.candidate, c.baseline, label, float(factors[label]), int(steps[label]), c.n,
                              c.mean_diff, c.ci_low, c.ci_high, c.confidence, c.t_pvalue, c.adjusted_pvalue,
                              c.verdict, c.reason, c.family_size, c.correction))
    return sorted(out, key=lambda p: (p.finalist, p.baseline, p.factor))


def _called(p: DeltaPoint) -> str:
    who = "the finalist" if p.verdict == BETTER else "the baseline"
    return f"{p.verdict} at {p.horizon} ({who} wins, adjusted p {p.adjusted_p:.2g})"


def trend_words(points: Sequence[DeltaPoint]) -> str:
    """One sentence on how a pair's gap moves from the shortest to the longest horizon, from the corrected
    verdicts alone.

    - flips: "better" at one horizon and "worse" at another;
    - both ends called the same way: |delta| "shrinks" or "grows" when its change exceeds the combined
      half-width sqrt(h1^2 + h2^2) of the two intervals (independent runs), else it "holds";
    - called only at the longest horizon: the gap "appears"; only at the shortest: it "fades";
    - called at neither end (perhaps in between): no resolved gap at the ends, said as such.
    """
    points = sorted(points, key=lambda p: p.factor)
    if not points:
        return "no finished pair to compare"
    called = {p.verdict for p in points if p.significant}
    first, last = points[0], points[-1]
    if called == {BETTER, WORSE}:
        return ("the gap flips: " + ", ".join(_called(p) for p in points if p.significant))
    if len(points) == 1:
        return (f"only {first.horizon} finished: {_called(first)}" if first.significant else
                f"only {first.horizon} finished: delta {first.mean:+.4f}, no resolved difference "
                f"({first.verdict}{': ' + first.reason if first.reason else ''})")
    span = f"from {first.mean:+.4f} at {first.horizon} to {last.mean:+.4f} at {last.horizon}"
    if first.significant and last.significant:
        halves = [(p.ci_high - p.ci_low) / 2.0 for p in (first, last)]
        change = abs(last.mean) - abs(first.mean)
        noise = math.sqrt(halves[0] ** 2 + halves[1] ** 2)
        trend = "holds" if abs(change) <= noise else "shrinks" if change < 0 else "grows"
        return f"the gap {trend} {span}; {_called(last)}"
    if last.significant:
        return f"the gap appears {span}: not resolved at {first.horizon}, {_called(last)}"
    if first.significant:
        return f"the gap fades {span}: {_called(first)}, not resolved at {last.horizon}"
    middle = [p for p in points if p.significant]
    if middle:
        return f"no resolved gap at {first.horizon} or {last.horizon} ({span}); " + ", ".join(_called(p) for p in middle)
    return f"no resolved gap at any horizon ({span})"


def _ci(p: DeltaPoint) -> str:
    if p.verdict == NO_VERDICT:
        return f"{p.mean:+.4f} (n={p.n}; no verdict: {p.reason})"
    level = f"{p.confidence * 100:.6g} %"
    return (f"{p.mean:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}] ({level}), adj. p {p.adjusted_p:.2g}, "
            f"**{p.verdict}**")


def family_sentence(points: Sequence[DeltaPoint], alpha: float) -> str:
    """What family the verdicts belong to and what its correction guarantees."""
    tested = [p for p in points if p.verdict != NO_VERDICT]
    if not tested:
        return "No comparison could be tested, so no verdict is called."
    m, correction = tested[0].family_size, tested[0].correction
    what = CORRECTIONS.get(correction, correction)
    guarantee = ("when no finalist truly differs from a baseline, the chance of any false \"better\" or \"worse\" "
                 f"in this report is at most {alpha:g}" if correction in ("holm", "bonferroni") else
                 f"the expected share of false verdicts among those called is at most {alpha:g}"
                 if correction == "fdr_bh" else f"each comparison is tested at alpha {alpha:g} on its own")
    return (f"Verdicts: the {m} comparisons (finalists x baselines x horizons) are one family, adjusted by {what} "
            f"at alpha {alpha:g}: {guarantee}. Each interval is at the level of its own test.")


def _stat_cell(values: Sequence[float], digits: int = 4) -> str:
    if not values:
        return "-"
    s = seed_stats(values)
    if s.n == 1:
        return f"{s.mean:.{digits}f} (n=1)"
    return f"{s.mean:.{digits}f} ± {s.half_width:.{digits}f} (n={s.n})"


def seeds_sentence(seeds: Sequence[int], sweep_seeds: Sequence[int] | None) -> str:
    """Which seeds ran, and whether they are fresh (disjoint from the sweep's) or reuse the sweep's own."""
    listed = ", ".join(str(s) for s in seeds)
    if sweep_seeds is None:
        return f"Seeds (the same for every group and horizon): {listed}."
    reused = sorted(set(int(s) for s in seeds) & set(int(s) for s in sweep_seeds))
    if not reused:
        return (f"Seeds (the same for every group and horizon): {listed}, fresh: disjoint from the sweep's own "
                f"({', '.join(str(s) for s in sweep_seeds)}), so the noise that helped pick the finalists plays no "
                "part in these verdicts.")
    return (f"Seeds (the same for every group and horizon): {listed}. **{len(reused)} of them ("
            f"{', '.join(str(s) for s in reused)}) are the sweep's own**, on which the finalists were chosen: "
            "these verdicts are biased towards the finalists (the winner's curse). Run without "
            "--reuse-sweep-seeds for fresh seeds.")


def render_markdown(sweep_name: str, points: Sequence[DeltaPoint], finalists: Mapping[str, str],
                    horizons: Sequence[str], steps: Mapping[str, int], seeds: Sequence[int],
                    losses: Mapping[str, Mapping[str, Sequence[float]]],
                    downstream: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                    downstream_horizon: str | None = None, plot_name: str = "deltas.png",
                    alpha: float = DEFAULT_ALPHA, sweep_seeds: Sequence[int] | None = None) -> str:
    """The report. `finalists`: finalist key -> a description; `losses`: horizon -> group -> per-seed final
    val_loss; `downstream`: group -> metric -> per-seed values (at `downstream_horizon`); `sweep_seeds`: the
    seeds the searched sweep ran (to say whether these are fresh)."""
    lines = [f"# Confirmation of sweep `{sweep_name}`", "",
             seeds_sentence(seeds, sweep_seeds) + " Horizons: " + ", ".join(f"{h} ({steps[h]} steps)" for h in horizons) + ". No early stopping.", "",
             family_sentence(points, alpha), "",
             "## Finalists", "", "| finalist | schedule (sweep mean final val_loss) |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in finalists.items()]
    groups = sorted({g for h in losses.values() for g in h})
    lines += ["", "## Final val_loss (seed mean ± 95 % CI half-width)", "",
              "| group | " + " | ".join(horizons) + " |", "| --- |" + " --- |" * len(horizons)]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(_stat_cell(losses.get(h, {}).get(g, [])) for h in horizons) + " |")
    lines += ["", "## Paired delta, finalist − baseline (final val_loss; negative: the finalist is better): "
              "mean [CI at the test's level], family-adjusted p, verdict", "", "| finalist | baseline | " + " | ".join(horizons) + " |",
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
    """Delta against horizon factor (log2 axis), one panel per baseline, one line per finalist, bars at each
    point's own (family-corrected) interval."""
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
    """The report files under `confirm/` on the sweep run, and each delta as a metric at step = horizon steps
    (`confirm.delta.F.vs.B`, with `.ci_low`, `.ci_high`, `.ci_level` and `.adjusted_p`)."""
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
            # The interval at the level of its family-corrected test (not a fixed 95 %), and that level.
            metrics += [Metric(f"{key}.ci_low", p.ci_low, now, p.steps),
                        Metric(f"{key}.ci_high", p.ci_high, now, p.steps),
                        Metric(f"{key}.ci_level", p.confidence, now, p.steps)]
        if math.isfinite(p.adjusted_p):
            metrics.append(Metric(f"{key}.adjusted_p", p.adjusted_p, now, p.steps))
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
