"""`sweep report NAME`: a Markdown report with PNGs, written to the sweep folder and logged to MLflow.

    build_report(name, storage, tracking_uri, out)  ->  <out>/report.md, report_*.png
                                                   ->  artifacts report/... of the sweep's parent MLflow run

The report ranks the finished groups (mean final val_loss and val_bpb over seeds, std, 95 % t-interval),
lists the pruned, diverged and errored ones apart, compares every shape with every baseline on the same
seeds (paired t, Wilcoxon where n allows), calls a verdict only on p-values adjusted over the whole family
of the report's comparisons (`verdict.correction`, Holm by default) with each interval at the level that
matches its test, warns when the numbers show a trainer that ignores its seed or its schedule, marks the
ranking as selected on these seeds (exploratory; `sweep confirm` gives the unbiased answer), says in
words whether the seeds could resolve the differences seen, and plots the top shapes' schedules and
val-loss curves.
The building blocks live in `sweep.analysis.read` (reading) and `sweep.analysis.content` (the numbers).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from search_spaces.errors import ConfigError
from sweep.analysis.content import (ComparisonRow, baseline_noise, compare_with_baselines, family_text, input_warnings,
                                    resolution, resolution_text)
from sweep.analysis.plots import plot_curve_overlay, plot_curve_panels
from sweep.analysis.read import GroupOutcome, SweepRecord, locate_sweep, metric_curves, read_sweep
from sweep.core.outcome import RankedGroup, rank_groups
from sweep.core.schedule_plot import plot_schedules
from sweep.core.secrets import redact_uri
from sweep.core.storage import is_remote
from sweep.stats.planning import DEFAULT_POWER, NoiseEstimate
from sweep.stats.verdicts import CALLED, DEFAULT_ALPHA, DEFAULT_CORRECTION, NO_VERDICT, min_wilcoxon_n

REPORT_FILE = "report.md"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)
SCHEDULES_PNG = "report_schedules.png"
CURVES_PNG = "report_val_loss.png"
PANELS_PNG = "report_val_loss_groups.png"
ARTIFACT_DIR = "report"  # under the sweep's parent MLflow run
TOP_SHAPES = 5  # searched shapes drawn with the baselines in the overlay plots
MAX_PANELS = 12


@dataclass(frozen=True)
class Report:
    """A written report: its Markdown, the files written and the MLflow run they were logged to."""

    markdown: str
    files: tuple[Path, ...]
    run_id: str
    artifact_dir: str
    verdicts: tuple[str, ...] = ()  # the paired verdicts in plain text, one line each (`verdict_lines`)


def _f(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _ci(low: float, high: float, signed: bool = False) -> str:
    return "n/a" if not math.isfinite(low) else f"[{_f(low, signed=signed)}, {_f(high, signed=signed)}]"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2g}" if value < 1e-3 else f"{value:.3f}"


def ranking_table(ranked: Sequence[RankedGroup]) -> list[str]:
    """Markdown table of the ranked (finished) groups."""
    if not ranked:
        return ["No group finished: nothing is ranked."]
    lines = ["| rank | group | seeds | val_loss mean | std | 95 % CI | val_bpb mean | std | 95 % CI |",
             "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
    for r in ranked:
        bpb = r.bpb
        lines.append(
            f"| {r.rank} | {r.group.name} | {r.loss.n} | {_f(r.loss.mean)} | {_f(r.loss.std)} | "
            f"{_ci(r.loss.ci_low, r.loss.ci_high)} | {_f(bpb.mean if bpb else None)} | "
            f"{_f(bpb.std if bpb else None)} | {_ci(bpb.ci_low, bpb.ci_high) if bpb else 'n/a'} |")
    return lines


def unranked_table(unranked: Sequence[GroupOutcome]) -> list[str]:
    """Markdown table of the groups that did not finish, with the step they reached."""
    lines = ["| group | status | at step | last val_loss (mean over seeds) |", "| --- | --- | ---: | ---: |"]
    for g in unranked:
        loss = g.stats("val_loss")
        lines.append(f"| {g.name} | {g.status} | {g.step} | {_f(loss.mean if loss else None)} |")
    return lines


def _level(confidence: float) -> str:
    """0.99975 -> "99.975 %": enough digits to tell the levels of a family apart."""
    return f"{confidence * 100:.6g} %"


def comparison_table(rows: Sequence[ComparisonRow], alpha: float) -> list[str]:
    """Markdown table: mean paired difference (shape minus baseline), its interval at the level of its test,
    the raw and family-adjusted p-values and the verdict (or why there is none)."""
    if not rows:
        return ["No shape to compare with a baseline."]
    lines = ["| shape | baseline | n | mean difference | CI at the test's level | p (paired t) | p (adjusted) | "
             "p (Wilcoxon) | verdict |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    wil_n = min_wilcoxon_n(alpha)
    for row in rows:
        c = row.comparison
        if c is None:
            lines.append(f"| {row.candidate.name} | {row.baseline.name} | | | | | | | {row.note} |")
            continue
        if c.verdict == NO_VERDICT:
            lines.append(f"| {row.candidate.name} | {row.baseline.name} | {c.n} | {_f(c.mean_diff, signed=True)} | "
                         f"| | | | **{NO_VERDICT}**: {c.reason} |")
            continue
        wil = _p(c.wilcoxon_pvalue) if c.wilcoxon_pvalue is not None else f"n < {wil_n}"
        ci = _ci(c.ci_low, c.ci_high, signed=True)
        lines.append(f"| {row.candidate.name} | {row.baseline.name} | {c.n} | {_f(c.mean_diff, signed=True)} | "
                     f"{ci} ({_level(c.confidence)}) | {_p(c.t_pvalue)} | {_p(c.adjusted_pvalue)} | {wil} | "
                     f"**{c.verdict}** |")
    return lines


def verdict_lines(rows: Sequence[ComparisonRow], alpha: float, correction: str) -> list[str]:
    """The called verdicts as plain lines for a terminal (what `sweep run` prints at its end), then one line
    counting the rest: a sweep of hundreds of shapes must not print every comparison."""
    tested = [r.comparison for r in rows if r.comparison is not None and r.comparison.verdict != NO_VERDICT]
    m = tested[0].family_size if tested else 0
    lines = [f"Verdicts (shape minus baseline, final val_loss; paired t over the same seeds, {correction} over "
             f"{m} comparisons, alpha {alpha:g}; lower is better):"]
    called = 0
    rest: dict[str, int] = {}
    for row in rows:
        c = row.comparison
        if c is not None and c.verdict in CALLED:
            called += 1
            lines.append(f"  {row.candidate.name} vs {row.baseline.name}: {_f(c.mean_diff, signed=True)} "
                         f"{_ci(c.ci_low, c.ci_high, signed=True)} ({_level(c.confidence)}, n={c.n}), "
                         f"adjusted p {_p(c.adjusted_pvalue)}: {c.verdict.upper()}")
        else:
            key = "not compared" if c is None else c.verdict
            rest[key] = rest.get(key, 0) + 1
    if not rows:
        lines.append("  no shape to compare with a baseline")
    elif not called:
        lines.append("  no difference resolved")
    if rest:
        lines.append(f"  {'the other ' if called else ''}{sum(rest.values())} comparisons: "
                     + ", ".join(f"{n} {k}" for k, n in sorted(rest.items())) + " (the report lists each)")
    return lines


def warning_lines(warnings: dict[str, str], groups: Sequence[GroupOutcome]) -> list[str]:
    """One line per group whose numbers show the trainer ignored its seed or its schedule."""
    names = {g.group_id: g.name for g in groups}
    return [f"- **{names.get(gid, gid)}** {why}; its comparisons get no verdict." for gid, why in warnings.items()]


def noise_lines(noise: NoiseEstimate, name: str) -> list[str]:
    """Seed noise measured on the baselines, and the `sweep plan-seeds` command it feeds."""
    if noise.within_std is None:
        return ["Not measurable: no finished baseline group with two or more seeds."]
    lines = [f"- pooled within-group std of final val_loss over {len(noise.groups)} finished baseline group(s): "
             f"{_f(noise.within_std)} nats ({noise.within_df} degrees of freedom)"]
    if noise.paired_std is not None:
        lines.append(f"- std of paired per-seed differences between baselines ({len(noise.pairs)} pair(s)): "
                     f"{_f(noise.paired_std)} nats ({noise.paired_df} degrees of freedom)")
    else:
        lines.append("- std of paired differences: needs two finished baselines on the same seeds")
    lines.append(f"- plan the seeds for the next sweep with `sweep plan-seeds --from-sweep {name} --effect X`")
    return lines


def _plot_groups(record: SweepRecord, ranked: Sequence[RankedGroup]) -> list[GroupOutcome]:
    """The top searched shapes by rank, then every baseline (finished or not)."""
    top = [r.group for r in ranked if not r.group.is_baseline][:TOP_SHAPES]
    return top + [g for g in record.groups if g.is_baseline]


def write_plots(record: SweepRecord, ranked: Sequence[RankedGroup], unranked: Sequence[GroupOutcome],
                out: Path) -> dict[str, Path]:
    """The schedule overlay, the val-loss overlay and the per-group panels; returns what was written."""
    written: dict[str, Path] = {}
    chosen = _plot_groups(record, ranked)
    schedules = {g.name: g.schedule for g in chosen if g.schedule is not None}
    if schedules and record.total_steps:
        written["schedules"] = plot_schedules(schedules, int(record.total_steps), out / SCHEDULES_PNG)
    fetched: dict[str, dict] = {}  # group id -> seed curves: a group can be in both figures, read it once

    def seed_curves(group: GroupOutcome) -> dict:
        if group.group_id not in fetched:
            fetched[group.group_id] = metric_curves(record, group)
        return fetched[group.group_id]

    curves = {g.name: seed_curves(g) for g in chosen}
    curves = {k: v for k, v in curves.items() if any(v.values())}
    if curves:
        written["curves"] = plot_curve_overlay(curves, out / CURVES_PNG,
                                               title=f"{record.location.name}: top shapes and baselines")
    panel_groups = ([r.group for r in ranked] + list(unranked))[:MAX_PANELS]
    panels = {f"{g.name} {g.status}": seed_curves(g) for g in panel_groups}
    panels = {k: v for k, v in panels.items() if any(v.values())}
    if panels:
        written["panels"] = plot_curve_panels(panels, out / PANELS_PNG)
    return written


def render_markdown(record: SweepRecord, rows: Sequence[ComparisonRow], warnings: dict[str, str],
                    alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
                    plots: dict[str, Path] | None = None, correction: str = DEFAULT_CORRECTION) -> str:
    """The whole report as Markdown (plots referenced by file name, next to report.md), from the record, its
    paired comparisons (`compare_with_baselines`) and the input warnings (`input_warnings`)."""
    ranked, unranked = rank_groups(record.groups)
    res = resolution(rows, alpha, power)
    loc = record.location
    counts: dict[str, int] = {}
    for g in record.groups:
        counts[g.status] = counts.get(g.status, 0) + 1
    seeds = sorted({s for g in record.groups for s in g.seed_runs}, key=lambda s: (len(s), s))
    out = [
        f"# Sweep report: {loc.name}", "",
        f"- MLflow: `{redact_uri(loc.tracking_uri)}`, experiment `{loc.experiment}`, sweep run `{record.run_id}` "
        f"({record.run_status}), sweep id `{record.sweep_id}`",
        f"- groups: {len(record.groups)} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}); "
        f"seeds: {', '.join(seeds) or 'none'}; horizon: {record.total_steps or 'unknown'} steps",
        f"- verdicts: paired t-test over the same seeds, called only on p-values adjusted over the report's whole "
        f"family of comparisons ({correction}, alpha {alpha:g}); lower loss is better",
    ]
    if record.run_status != "FINISHED":
        out.append(f"- the sweep run is {record.run_status}: the sweep did not end normally "
                   f"(`sweep resume {loc.name}` continues it); groups still running are not ranked")
    if warnings:
        out += ["", "## Warnings: the trainer ignored an input", "", *warning_lines(warnings, record.groups)]
    out += ["", "## Ranking (finished groups, by mean final val_loss; exploratory, see below)", "",
            *ranking_table(ranked)]
    if unranked:
        out += ["", "## Not ranked (stopped early or failed; their losses are not comparable)", "",
                *unranked_table(unranked)]
    shapes = sum(1 for r in ranked if not r.group.is_baseline)
    out += ["", "## Paired differences to the baselines (shape minus baseline, final val_loss, nats)", "",
            *family_text(res, shapes), "", *comparison_table(rows, alpha), "",
            "## Can the seeds resolve these differences?", "",
            *resolution_text(res), "", "## Seed noise (baselines)", "",
            *noise_lines(baseline_noise(record.groups), loc.name)]
    plots = plots or {}
    captions = {"schedules": "LR schedules of the top shapes and the baselines",
                "curves": "val_loss of the top shapes and the baselines: mean over seeds, band = min-max across seeds",
                "panels": "val_loss per group: each seed, the mean (black) and the min-max band"}
    if plots:
        out += ["", "## Plots", ""]
        for key, caption in captions.items():
            if key in plots:
                out += [f"{caption}:", "", f"![{caption}]({plots[key].name})", ""]
    return "\n".join(out).rstrip() + "\n"


def build_report(name: str, storage_path: str | None = None, tracking_uri: str | None = None,
                 out: str | None = None, experiment: str | None = None) -> Report:
    """Read sweep `name`, write report.md and the PNGs to `out` (default: the sweep folder), log them to
    the sweep's parent MLflow run under ``report/``. ConfigError (exit 2) before writing anything when the
    sweep cannot be found."""
    location = locate_sweep(name, storage_path, tracking_uri, experiment)
    if out is None:
        if location.sweep_dir is None:
            raise ConfigError("--out", "required when the sweep folder is unknown (no sweep.yaml found)")
        if is_remote(location.sweep_dir):
            raise ConfigError("--out", f"required when the sweep folder is remote ({location.sweep_dir})")
        out = location.sweep_dir
    elif Path(out).exists() and not Path(out).is_dir():
        raise ConfigError("--out", f"{out} exists and is not a folder")
    record = read_sweep(location)
    cfg = location.config
    alpha = cfg.verdict.alpha if cfg is not None else DEFAULT_ALPHA
    power = cfg.verdict.power if cfg is not None else DEFAULT_POWER
    correction = cfg.verdict.correction if cfg is not None else DEFAULT_CORRECTION
    step = cfg.script.metric_precision if cfg is not None and cfg.script is not None else None
    folder = Path(out).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ranked, unranked = rank_groups(record.groups)
    plots = write_plots(record, ranked, unranked, folder)
    # The comparisons once, for the Markdown and for the verdict lines. `step`: the metric's rounding step
    # when known (a script's `metric_precision`), else inferred from the values.
    warnings = input_warnings(record.groups, record.total_steps)
    rows = compare_with_baselines(record.groups, alpha, correction=correction, resolution=step,
                                  total_steps=record.total_steps, warnings=warnings)
    markdown = render_markdown(record, rows, warnings, alpha, power, plots, correction)
    report_path = folder / REPORT_FILE
    # Write then rename: a reader (or the MLflow upload) never sees half a report.
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".report.", suffix=".md", delete=False) as tmp:
        tmp.write(markdown)
    Path(tmp.name).replace(report_path)
    files = (report_path, *plots.values())
    client = record.client
    for path in files:
        client.log_artifact(record.run_id, str(path), ARTIFACT_DIR)
    verdicts = tuple(verdict_lines(rows, alpha, correction))
    # The sweep run's description (what MLflow's run page shows first): the verdicts and where the rest is.
    client.set_tag(record.run_id, DESCRIPTION_TAG, "\n".join([verdicts[0], "", *(f"-{line[1:]}" for line in verdicts[1:]),
                                                             "", f"The whole report: artifacts, `{ARTIFACT_DIR}/{REPORT_FILE}`."]))
    return Report(markdown=markdown, files=tuple(files), run_id=record.run_id, artifact_dir=ARTIFACT_DIR,
                  verdicts=verdicts)
