"""Downstream evaluation of a confirmation stage: lm-eval on every group's final checkpoints, logged to MLflow.

Each finished group of the stage (finalists and baselines alike, so they can be compared) has one final
checkpoint per seed under `<stage>/train/<trial>-seed<k>/step_*/`. Each is evaluated with
`trainable.lm_eval_adapter.evaluate_checkpoint` (EleutherAI's lm-evaluation-harness through our model
adapter); the numbers go to the seed's MLflow run (`lm_eval.<task>.<metric>`) and their seed mean, std and
95 % t-interval to the group's run (`..._mean`, `..._ci95_low`, ...). Results are kept in
`<stage>/lm_eval.json` as they come, so a rerun evaluates only what is missing.

Only the built-in GPT trainer has checkpoints to evaluate; other backends are skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from sweep.config import SweepConfig
from sweep.confirm.plan import group_key
from sweep.engine.group_trial import train_run_name
from sweep.stats.seeds import seed_stats
from sweep.tracking.queries import latest_sweep_run, sweep_group_runs
from sweep.tracking.tags import TAG_SWEEP_ID

RESULTS_FILE = "lm_eval.json"


def final_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (`step_*` with model.pt and meta.json) of one seed's Train run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("step_")
             and (p / "model.pt").exists() and (p / "meta.json").exists()]
    return max(found, key=lambda p: int(p.name.split("_", 1)[1]), default=None)


def evaluate_stage(stage: SweepConfig, groups: Sequence[Any], tasks: Sequence[str], device: str = "cpu",
                   limit: int | None = None, batch_size: int = 16) -> dict[str, dict[str, dict[str, float]]]:
    """group key -> seed -> lm-eval metrics for every finished group of `stage` (a list of `GroupOutcome`)."""
    from trainable.lm_eval_adapter import evaluate_checkpoint

    if not stage.runner.has_lm_checkpoints:
        return {}
    results_path = Path(stage.sweep_dir) / RESULTS_FILE
    saved: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if saved.get("tasks") != list(tasks) or saved.get("limit") != limit:
        saved = {"tasks": list(tasks), "limit": limit, "groups": {}}
    out: dict[str, dict[str, dict[str, float]]] = saved["groups"]
    for g in groups:
        if not g.finished:
            continue
        per_seed = out.setdefault(group_key(g.config), {})
        for seed in (str(s) for s in g.config["seeds"]):
            if seed in per_seed:
                continue  # evaluated by an earlier run of this command
            ckpt = final_checkpoint(Path(stage.sweep_dir) / "train" / train_run_name(g.group_id, int(seed)))
            if ckpt is None:
                raise FileNotFoundError(f"no final checkpoint for group {g.group_id} seed {seed} in {stage.sweep_dir}")
            print(f"confirm: lm-eval {', '.join(tasks)} on {group_key(g.config)} seed {seed} ({ckpt.name})", flush=True)
            per_seed[seed] = evaluate_checkpoint(ckpt, tasks, device=device, batch_size=batch_size, limit=limit)
            results_path.write_text(json.dumps(saved, indent=1))
    return out


def by_metric(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """group -> metric -> per-seed values (seed order), the report's form."""
    out: dict[str, dict[str, list[float]]] = {}
    for group, per_seed in results.items():
        for seed in sorted(per_seed, key=int):
            for metric, value in per_seed[seed].items():
                out.setdefault(group, {}).setdefault(metric, []).append(value)
    return out


def log_to_mlflow(stage: SweepConfig, groups: Sequence[Any],
                  results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> int:
    """Log the metrics to the stage's seed runs and their seed statistics to its group runs; returns the
    number of runs written. Runs are found by their tags (sweep name, kind, group, seed)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stage.tracking_uri)
    exp = client.get_experiment_by_name(stage.experiment)
    if exp is None:
        return 0
    sweep_run = latest_sweep_run(client, exp.experiment_id, stage.name)
    if sweep_run is None:
        return 0
    group_runs, seed_runs = sweep_group_runs(client, exp.experiment_id, sweep_run.data.tags[TAG_SWEEP_ID])
    now, written = int(time.time() * 1000), 0
    for g in groups:
        per_seed = results.get(group_key(g.config))
        if not per_seed:
            continue
        step = int(g.step)
        for seed, metrics in per_seed.items():
            seed_run = seed_runs.get(g.group_id, {}).get(seed)
            if seed_run is not None:
                client.log_batch(seed_run.info.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
                written += 1
        group_run = group_runs.get(g.group_id)
        if group_run is None:
            continue
        stats = []
        for metric, values in by_metric({"g": per_seed})["g"].items():
            summary = seed_stats(values)
            stats += [Metric(k, v, now, step) for k, v in summary.as_metrics(metric).items()]
        client.log_batch(group_run.info.run_id, metrics=stats)
        written += 1
    return written
