"""``sweep confirm NAME --top K --horizons 1x,2x,4x --seeds N``: the confirmation stage of a finished sweep.

    sweep confirm demo --top 2 --horizons 1x,2x,4x --seeds 5                 # real lm-eval tasks (hub)
    sweep confirm demo --top 1 --horizons 1x,2x --seeds 3 --lm-eval-tasks local   # offline test tasks
    sweep confirm demo ... --lm-eval-tasks none                               # no downstream evaluation
    sweep confirm demo --config confirm.yaml       # a `confirm:` block gives the defaults; flags win
    sweep confirm demo --reuse-sweep-seeds         # the sweep's own seeds first (biased: see sweep.confirm)

Runs the K best finished shapes of sweep NAME plus its baselines at every horizon over N fresh seeds, disjoint
from the sweep's (one stage sweep
`NAME.confirm-<f>x` per horizon, see `sweep.confirm`), evaluates the final checkpoints of the longest horizon
with lm-eval (trainer backend only), then writes `<storage>/NAME/confirm/report.md`, `deltas.png` and
`deltas.json` and logs them on the sweep's MLflow run. Run it again to resume an interrupted confirmation:
finished stages are kept, the interrupted one continues from its checkpoints (as `sweep resume` does).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from search_spaces.errors import ConfigError

_TASK_SETS = ("default", "local", "none")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("confirm", help="re-run a sweep's finalists and baselines at longer horizons "
                                   "and on more seeds, then report and evaluate downstream")
    parser.add_argument("name", help="the finished sweep to confirm")
    parser.add_argument("--config", default=None,
                        help="a YAML file whose `confirm:` block sets the defaults of the flags below")
    parser.add_argument("--top", type=int, default=None, help="finalists: the K best finished shapes (default 2)")
    parser.add_argument("--horizons", default=None, help="factors of the sweep's horizon (default 1x,2x,4x)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per group, the same for all (default 5); fresh: none of the sweep's own seeds")
    parser.add_argument("--reuse-sweep-seeds", action="store_true", default=None,
                        help="run the sweep's own seeds first: comparable with the search, but the finalists were "
                             "chosen on them, so their verdicts are biased towards the finalists")
    parser.add_argument("--storage", default="./sweeps", help="the sweep's storage (default ./sweeps)")
    parser.add_argument("--overwrite", action="store_true", help="delete existing stages of this confirmation first")
    parser.add_argument("--lm-eval-tasks", default=None,
                        help="default (wikitext, lambada_openai, arc_easy, hellaswag, piqa, winogrande; needs the "
                             "Hugging Face hub), local (small offline tasks in the repo), none, or a comma list")
    parser.add_argument("--lm-eval-limit", type=int, default=None, help="at most this many items per task")
    parser.add_argument("--lm-eval-device", default="cpu", help="torch device for lm-eval (default cpu)")
    parser.set_defaults(func=run)


def lm_eval_tasks(value: str) -> list[str]:
    """The task list an --lm-eval-tasks value names (import-free for `none`)."""
    value = value.strip()
    if value == "none":
        return []
    if value in ("default", "local"):
        from trainable.lm_eval_adapter import DEFAULT_TASKS, LOCAL_TASKS

        return list(DEFAULT_TASKS if value == "default" else LOCAL_TASKS)
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--lm-eval-tasks", f"expected {', '.join(_TASK_SETS)} or a comma list, got {value!r}")
    return tasks


def settings(args: argparse.Namespace, storage: str | None = None):
    """The `confirm:` block of --config (else of the sweep's own saved config, when it has one) with the
    command-line flags laid over it."""
    from sweep.confirm import ConfirmSettings, parse_horizons

    block = None
    if args.config is not None:
        from trainable.config import load_yaml

        raw = load_yaml(args.config)
        block = raw.get("confirm") if isinstance(raw, dict) else None
    elif storage is not None:
        from sweep.tuner import load_saved_config, sweep_exists

        if sweep_exists(storage, args.name):
            block = load_saved_config(storage, args.name).confirm
    base = ConfirmSettings.parse(block)
    return ConfirmSettings(
        top=base.top if args.top is None else args.top,
        horizons=base.horizons if args.horizons is None else parse_horizons(args.horizons),
        seeds=base.seeds if args.seeds is None else args.seeds,
        lm_eval_tasks=base.lm_eval_tasks if args.lm_eval_tasks is None else args.lm_eval_tasks,
        lm_eval_limit=base.lm_eval_limit if args.lm_eval_limit is None else args.lm_eval_limit,
        reuse_sweep_seeds=base.reuse_sweep_seeds if args.reuse_sweep_seeds is None else args.reuse_sweep_seeds,
    )


def run(args: argparse.Namespace) -> int:
    from sweep.confirm import plan_confirmation, run_confirmation
    from sweep.config import parse_storage

    storage = parse_storage(args.storage, "--storage")
    chosen = settings(args, storage)
    tasks = lm_eval_tasks(chosen.lm_eval_tasks)
    if chosen.lm_eval_limit is not None and chosen.lm_eval_limit < 1:
        raise ConfigError("--lm-eval-limit", f"must be >= 1, got {chosen.lm_eval_limit}")
    plan = plan_confirmation(storage, args.name, chosen.top, chosen.horizons, chosen.seeds, chosen.reuse_sweep_seeds)
    stages = run_confirmation(plan, overwrite=args.overwrite)
    planned = len(plan.groups)
    ended = {label: [g for g in groups if g.outcome.status != "running"] for label, groups in stages.items()}
    if len(stages) < len(plan.stages) or any(len(groups) < planned for groups in ended.values()):
        print(f"confirmation of {args.name!r} was cut short; continue it with the same command", file=sys.stderr)
        return 130
    code = 0
    downstream: dict[str, Any] = {}
    if tasks and plan.sweep.backend == "trainer":
        code = max(code, _downstream(plan, stages, tasks, args.lm_eval_device, chosen.lm_eval_limit, downstream))
    stage_reports = _stage_reports(plan, list(stages))
    paths = report(plan, stages, downstream, stage_reports)
    print(f"\nconfirmation of {args.name!r}: report {paths['report']}\n  plot   {paths['plot']}", flush=True)
    errored = any(g.outcome.status != "finished" for groups in stages.values() for g in groups)
    return max(code, 1 if errored else 0)


def _downstream(plan, stages, tasks: list[str], device: str, limit: int | None, out: dict[str, Any]) -> int:
    """lm-eval on the longest horizon's final checkpoints, into MLflow and `out`; 1 when it failed."""
    from sweep.confirm import horizon_label
    from sweep.confirm_lm_eval import by_metric, evaluate_stage, log_to_mlflow

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


def _stage_reports(plan, labels: list[str]) -> dict[str, str]:
    """Each stage is an ordinary sweep, so `sweep report` (sweep.report) writes its ranking, paired verdicts
    and curves into the stage folder and onto the stage's MLflow run; horizon label -> report path."""
    from sweep.confirm import horizon_label
    from sweep.report import build_report

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


def report(plan, stages, downstream: dict[str, Any], stage_reports: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the confirmation report (local storage: `<sweep>/confirm/`) and log it on the sweep's MLflow run."""
    from pathlib import Path

    from sweep.config import is_remote
    from sweep.confirm import group_key, horizon_label
    from sweep.confirm_report import delta_points, log_report, render_markdown, write_report
    from sweep.mlflow_tracking import find_sweep_run

    labels = [horizon_label(f) for f in plan.factors]
    factors = dict(zip(labels, plan.factors))
    steps = {label: stage.max_step() for label, stage in zip(labels, plan.stages)}
    finalist_keys = [g.group_id for g in plan.finalists]
    baseline_keys = [group_key(g) for g in plan.groups if g.get("baseline")]
    verdict = plan.sweep.verdict
    points = delta_points(stages, factors, steps, finalist_keys, baseline_keys, verdict.alpha, verdict.correction)
    finalists = {g.group_id: f"`{_schedule_text(g.config['schedule'])}` ({g.mean_val_loss:.4f})" for g in plan.finalists}
    losses = {label: {group_key(g.config): [v for _, v in sorted(g.outcome.final_val_loss.items(), key=lambda kv: int(kv[0]))]
                      for g in groups if g.finished} for label, groups in stages.items()}
    markdown = render_markdown(plan.sweep.name, points, finalists, labels, steps, plan.seeds, losses,
                               downstream.get("values"), downstream.get("horizon"), alpha=verdict.alpha,
                               sweep_seeds=plan.sweep.seeds)
    if stage_reports:
        markdown += ("\n## Per-horizon reports (ranking, paired verdicts, curves: `sweep report`)\n\n"
                     + "".join(f"- {label}: {path}\n" for label, path in stage_reports.items()))
    out_dir = plan.report_dir if not is_remote(plan.report_dir) else tempfile.mkdtemp(prefix="confirm-report-")
    title = f"{plan.sweep.name}: finalist − baseline, final val_loss, {len(plan.seeds)} seeds"
    paths = write_report(Path(out_dir), markdown, points, title)
    run_id = find_sweep_run(plan.sweep.tracking_uri, plan.sweep.experiment, plan.sweep.name)
    if run_id is not None:
        log_report(plan.sweep.tracking_uri, run_id, paths, points)
    return paths


def _schedule_text(schedule: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in schedule.items())
