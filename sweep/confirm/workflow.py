"""A whole confirmation, start to end: plan, run the stages, evaluate downstream, report.

`sweep confirm` parses its flags and calls `confirm`; everything it decides and writes is here.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.analysis.report import build_report
from sweep.config.confirm_settings import ConfirmSettings, horizon_label
from sweep.confirm.lm_eval import by_metric, evaluate_stage, log_to_mlflow
from sweep.confirm.plan import ConfirmPlan, group_key, plan_confirmation
from sweep.confirm.report import delta_points, log_report, render_markdown, write_report
from sweep.confirm.stages import run_confirmation
from sweep.core import storage
from sweep.core.outcome import GroupOutcome
from sweep.core.status import FINISHED
from sweep.tracking.queries import find_sweep_run


@dataclass(frozen=True)
class ConfirmDone:
    """How a confirmation ended: cut short (resume it with the same command), or with its report."""

    cut_short: bool
    paths: dict[str, Any] = field(default_factory=dict)
    errored: bool = False  # a stage group did not finish
    lm_eval_failed: bool = False


def confirm(storage_path: str, name: str, chosen: ConfirmSettings, tasks: list[str], overwrite: bool = False,
            lm_eval_device: str = "cpu") -> ConfirmDone:
    """Plan and run (or resume) the confirmation of sweep `name`, then evaluate and report it."""
    plan = plan_confirmation(storage_path, name, chosen.top, chosen.horizons, chosen.seeds, chosen.reuse_sweep_seeds)
    stages = run_confirmation(plan, overwrite=overwrite)
    planned = len(plan.groups)
    ended = {label: [g for g in groups if g.ended] for label, groups in stages.items()}
    if len(stages) < len(plan.stages) or any(len(groups) < planned for groups in ended.values()):
        return ConfirmDone(cut_short=True)
    failed = False
    downstream: dict[str, Any] = {}
    if tasks and plan.sweep.runner.has_lm_checkpoints:
        failed = _downstream(plan, stages, tasks, lm_eval_device, chosen.lm_eval_limit, downstream) != 0
    stage_reports = _stage_reports(plan, list(stages))
    paths = write_confirmation_report(plan, stages, downstream, stage_reports)
    errored = any(g.status != FINISHED for groups in stages.values() for g in groups)
    return ConfirmDone(cut_short=False, paths=paths, errored=errored, lm_eval_failed=failed)


def _downstream(plan: ConfirmPlan, stages: dict[str, list[GroupOutcome]], tasks: list[str], device: str,
                limit: int | None, out: dict[str, Any]) -> int:
    """lm-eval on the longest horizon's final checkpoints, into MLflow and `out`; 1 when it failed."""
    label = horizon_label(plan.factors[-1])
    stage = plan.stages[-1]
    try:
        results = evaluate_stage(stage, stages[label], tasks, device=device, limit=limit)
    except Exception as err:  # a missing dataset (offline) must not cost the report
        print(f"sweep confirm: lm-eval failed ({err!r}); offline, use --lm-eval-tasks local or none",
              file=sys.stderr, flush=True)
        return 1
    log_to_mlflow(stage, stages[label], results)
    out.update({"horizon": label, "values": by_metric(results)})
    return 0


def _stage_reports(plan: ConfirmPlan, labels: list[str]) -> dict[str, str]:
    """Each stage is an ordinary sweep, so `sweep report` (sweep.analysis.report) writes its ranking, paired verdicts
    and curves into the stage folder and onto the stage's MLflow run; horizon label -> report path."""
    out = {}
    for factor, stage in zip(plan.factors, plan.stages):
        label = horizon_label(factor)
        if label not in labels:
            continue
        try:
            built = build_report(stage.name, plan.sweep.storage)
        except Exception as err:  # the confirmation's own report matters more than a stage's
            print(f"sweep confirm: no report for stage {stage.name} ({err!r})", file=sys.stderr, flush=True)
            continue
        out[label] = str(built.files[0])
    return out


def write_confirmation_report(plan: ConfirmPlan, stages: dict[str, list[GroupOutcome]], downstream: dict[str, Any],
                              stage_reports: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the confirmation report (local storage: `<sweep>/confirm/`) and log it on the sweep's MLflow run."""
    labels = [horizon_label(f) for f in plan.factors]
    factors = dict(zip(labels, plan.factors))
    steps = {label: stage.max_step() for label, stage in zip(labels, plan.stages)}
    finalist_keys = [g.group_id for g in plan.finalists]
    baseline_keys = [group_key(g) for g in plan.groups if g.get("baseline")]
    verdict = plan.sweep.verdict
    points = delta_points(stages, factors, steps, finalist_keys, baseline_keys, verdict.alpha, verdict.correction)
    # Each finalist named by its shape in words, as the sweep's leaderboard and report name it.
    finalists = {g.group_id: f"`{g.description}` ({g.mean_val_loss:.4f})" for g in plan.finalists}
    losses = {label: {group_key(g.config): [v for _, v in sorted(g.final_val_loss.items(), key=lambda kv: int(kv[0]))]
                      for g in groups if g.finished} for label, groups in stages.items()}
    markdown = render_markdown(plan.sweep.name, points, finalists, labels, steps, plan.seeds, losses,
                               downstream.get("values"), downstream.get("horizon"), alpha=verdict.alpha,
                               sweep_seeds=plan.sweep.seeds)
    if stage_reports:
        markdown += ("\n## Per-horizon reports (ranking, paired verdicts, curves: `sweep report`)\n\n"
                     + "".join(f"- {label}: {path}\n" for label, path in stage_reports.items()))
    out_dir = plan.report_dir if not storage.is_remote(plan.report_dir) else tempfile.mkdtemp(prefix="confirm-report-")
    title = f"{plan.sweep.name}: finalist − baseline, final val_loss, {len(plan.seeds)} seeds"
    paths = write_report(Path(out_dir), markdown, points, title)
    run_id = find_sweep_run(plan.sweep.tracking_uri, plan.sweep.experiment, plan.sweep.name)
    if run_id is not None:
        log_report(plan.sweep.tracking_uri, run_id, paths, points)
    return paths

