"""The confirmation stage: a sweep's finalists and baselines again, at longer horizons and on more seeds.

A search stage (ASHA, a few seeds, a short horizon) finds candidates cheaply; this stage decides. For a
finished sweep NAME it takes the `top` best finished searched shapes (by mean final val_loss) plus the sweep's
baseline presets and runs every one of them at each horizon factor (1x, 2x, 4x of the sweep's horizon; shapes
are fractions of T, so they stretch as they are) over the same `n_seeds` seeds, with no early stopping.

The seeds are fresh by default: the smallest integers the sweep never ran (a seed fixes both the
initialisation and the data order, so these runs share neither with the search). The finalists were picked
because they looked best on the sweep's own seeds, and part of that look is those seeds' noise (the
winner's curse); judged again on the same seeds, a finalist that is no better than a baseline is still called
better several times more often than alpha. `reuse_sweep_seeds` puts the sweep's seeds first, on request.

Each horizon is one *stage sweep* named `NAME.confirm-<factor>x` in the same storage, run by the ordinary
machinery (`sweep.tuner`: group trials, the MLflow callback, resume), with a `FixedGroupSearcher` in place of
TPE. Its `sweep.yaml` is a normal sweep config (scheduler off, budget = number of finalists), so
`sweep resume NAME.confirm-2x` continues an interrupted stage just like a sweep, and running
`sweep confirm` again skips finished stages and resumes the rest. In MLflow each stage's sweep run is a child
of the original sweep's run, tagged `schedsweep.stage = confirm-2x`.

The report (`sweep.confirm_report`) and the downstream evaluation (`sweep.confirm_lm_eval`) come after.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import yaml

from search_spaces.errors import ConfigError
from sweep import storage
from sweep.config import SweepConfig, baseline_label, is_remote, parse_saved_config
from sweep.progress import FINISHED, GroupOutcome, outcome_from_result

STAGE = "confirm"
_FACTOR_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*x?\s*$")


# ---- arguments ---------------------------------------------------------------------------------------------
def parse_horizons(text: str, field: str = "--horizons") -> tuple[float, ...]:
    """`1x,2x,4x` -> (1.0, 2.0, 4.0): positive factors of the sweep's horizon, ascending, no repeats."""
    factors: list[float] = []
    for part in str(text).split(","):
        m = _FACTOR_RE.match(part)
        value = float(m.group(1)) if m else math.nan
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(field, f"expected factors like 1x,2x,4x, got {part.strip()!r}")
        if value in factors:
            raise ConfigError(field, f"{part.strip()} appears twice")
        factors.append(value)
    return tuple(sorted(factors))


def horizon_label(factor: float) -> str:
    """`2.0` -> `2x`, `1.5` -> `1.5x`."""
    return f"{factor:g}x"


def stage_name(sweep_name: str, factor: float) -> str:
    """The stage sweep's name: `NAME.confirm-2x`."""
    return f"{sweep_name}.{STAGE}-{horizon_label(factor)}"


def confirm_seeds(sweep_seeds: Sequence[int], n: int, reuse_sweep_seeds: bool = False) -> tuple[int, ...]:
    """`n` seeds, the same list for every group and horizon, so every comparison is paired.

    By default the smallest integers that are not among `sweep_seeds`: fresh runs, whose noise played no part
    in choosing the finalists. With `reuse_sweep_seeds`, the sweep's own seeds first (their runs are then
    comparable with the search, but the verdicts inherit the selection bias), then the smallest unused ones.
    """
    if n < 1:
        raise ConfigError("--seeds", f"must be >= 1, got {n}")
    used = {int(s) for s in sweep_seeds}
    seeds = list(dict.fromkeys(int(s) for s in sweep_seeds))[:n] if reuse_sweep_seeds else []
    candidate = 0
    while len(seeds) < n:
        if candidate not in seeds and (reuse_sweep_seeds or candidate not in used):
            seeds.append(candidate)
        candidate += 1
    return tuple(seeds)


@dataclass(frozen=True)
class ConfirmSettings:
    """What `sweep confirm` runs: a `confirm:` block of a YAML file, or the command-line flags (which win).

        confirm: {top: 2, horizons: [1x, 2x, 4x], seeds: 5, reuse_sweep_seeds: false, lm_eval_tasks: default,
                  lm_eval_limit: null}
    """

    top: int = 2
    horizons: tuple[float, ...] = (1.0, 2.0, 4.0)
    seeds: int = 5
    lm_eval_tasks: str = "default"
    lm_eval_limit: int | None = None
    reuse_sweep_seeds: bool = False

    @staticmethod
    def parse(d: Any, path: str = "confirm") -> "ConfirmSettings":
        from trainable.config_checks import check_int, check_keys

        d = {} if d is None else check_keys(
            d, {"top", "horizons", "seeds", "reuse_sweep_seeds", "lm_eval_tasks", "lm_eval_limit"}, path)
        out = ConfirmSettings()
        horizons = d.get("horizons", out.horizons)
        if isinstance(horizons, (list, tuple)):
            horizons = ",".join(str(h) for h in horizons)
        tasks = d.get("lm_eval_tasks", out.lm_eval_tasks)
        if isinstance(tasks, (list, tuple)):
            tasks = ",".join(str(t) for t in tasks)
        if not isinstance(tasks, str) or not tasks.strip():
            raise ConfigError(f"{path}.lm_eval_tasks", f"expected default, local, none or task names, got {tasks!r}")
        limit = d.get("lm_eval_limit")
        reuse = d.get("reuse_sweep_seeds", out.reuse_sweep_seeds)
        if not isinstance(reuse, bool):
            raise ConfigError(f"{path}.reuse_sweep_seeds", f"expected true or false, got {reuse!r}")
        return ConfirmSettings(
            top=check_int(d.get("top", out.top), f"{path}.top", 1),
            horizons=parse_horizons(str(horizons), f"{path}.horizons"),
            seeds=check_int(d.get("seeds", out.seeds), f"{path}.seeds", 1),
            lm_eval_tasks=tasks,
            lm_eval_limit=None if limit is None else check_int(limit, f"{path}.lm_eval_limit", 1),
            reuse_sweep_seeds=reuse,
        )


# ---- the searched sweep's groups ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepGroup:
    """One group of a sweep as read back from its Tune folder: trial id, trial config and outcome."""

    group_id: str
    config: Mapping[str, Any]
    outcome: GroupOutcome

    @property
    def finished(self) -> bool:
        return self.outcome.status == FINISHED and self.outcome.stats() is not None

    @property
    def mean_val_loss(self) -> float:
        stats = self.outcome.stats()
        return stats.mean if stats is not None else math.inf


def read_groups(sweep_dir: str) -> list[SweepGroup]:
    """Every group in `<sweep_dir>/tune` with its last result (Tune's saved experiment state; no Ray needed)."""
    from ray.tune import ExperimentAnalysis

    from sweep.tuner import TUNE_DIR

    path = storage.join(sweep_dir, TUNE_DIR)
    # No experiment state (never started, or killed before Tune saved one): no group ran to read back.
    if not any(n.startswith("experiment_state") for n in storage.names(path)):
        return []
    analysis = ExperimentAnalysis(path)
    out = []
    for trial in analysis.trials:
        ended = trial.status in ("TERMINATED", "ERROR")
        outcome = outcome_from_result(str(trial.trial_id), trial.config, trial.last_result,
                                      errored=trial.status == "ERROR", ended=ended)
        out.append(SweepGroup(str(trial.trial_id), dict(trial.config), outcome))
    return out


def select_finalists(groups: Sequence[SweepGroup], top: int) -> list[SweepGroup]:
    """The `top` finished searched (non-baseline) groups with the lowest mean final val_loss."""
    searched = [g for g in groups if g.finished and not g.config.get("baseline")]
    return sorted(searched, key=lambda g: (g.mean_val_loss, g.group_id))[:top]


# ---- stage configs -----------------------------------------------------------------------------------------
def _scaled(value: int, factor: float) -> int:
    return max(1, int(round(value * factor)))


def scale_horizon(raw: dict[str, Any], factor: float) -> dict[str, Any]:
    """A sweep config dict (`SweepConfig.to_dict()` form) whose run horizon is `factor` times as long:
    `trainer.horizon.steps` (or `.tokens`), `simulator.total_steps` or `script.horizon_steps`."""
    out = dict(raw)
    if out.get("trainer") is not None:
        trainer = dict(out["trainer"])
        horizon = dict(trainer.get("horizon") or {})
        key = "steps" if horizon.get("steps") is not None else "tokens"
        horizon[key] = _scaled(int(horizon[key]), factor)
        trainer["horizon"] = horizon
        out["trainer"] = trainer
    elif out.get("simulator") is not None:
        out["simulator"] = {**out["simulator"], "total_steps": _scaled(int(out["simulator"]["total_steps"]), factor)}
    elif out.get("script") is not None:
        out["script"] = {**out["script"], "horizon_steps": _scaled(int(out["script"]["horizon_steps"]), factor)}
    return out


def stage_config(cfg: SweepConfig, factor: float, seeds: Sequence[int], n_finalists: int) -> SweepConfig:
    """The stage sweep at `factor` x the horizon: same backend, resources and storage, `seeds`, no ASHA, the
    original sweep's MLflow store and experiment, and budget = `n_finalists` (so `sweep resume` knows how many
    groups make it complete)."""
    raw = scale_horizon(cfg.to_dict(), factor)
    raw["name"] = stage_name(cfg.name, factor)
    raw["seeds"] = list(seeds)
    raw["budget"] = int(n_finalists)
    raw["scheduler"] = {**raw["scheduler"], "enabled": False}
    raw["mlflow"] = {"tracking_uri": cfg.tracking_uri, "experiment": cfg.experiment}
    raw["optuna"] = {"storage": None, "seed": cfg.optuna.seed}  # no study: nothing is searched
    try:
        return SweepConfig.from_dict(raw)
    except ConfigError as err:
        raise err.prefixed(raw["name"]) from None


def stage_groups(finalists: Sequence[SweepGroup], baselines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The stage's groups: baselines first (as in a sweep), then the finalists in rank order."""
    groups: list[dict[str, Any]] = [{"schedule": dict(b), "baseline": baseline_label(dict(b))} for b in baselines]
    for rank, g in enumerate(finalists, start=1):
        groups.append({"schedule": dict(g.config["schedule"]), "baseline": None, "source_group": g.group_id,
                       "finalist_rank": rank})
    return groups


def group_key(config: Mapping[str, Any]) -> str:
    """How a stage group is named across horizons: the baseline label, or the finalist's sweep group id."""
    return str(config.get("baseline") or config.get("source_group") or "?")


# ---- running one stage -------------------------------------------------------------------------------------
def _stage_callbacks(stage: SweepConfig, parent: SweepConfig, parent_run_id: str | None, label: str) -> list:
    from sweep.mlflow_tracking import MLflowSweepCallback
    from sweep.progress import SweepProgress
    from sweep.tuner import PENDING_MLFLOW_FILE

    # The same callbacks as a sweep's (sweep.tuner._callbacks), the MLflow one nested under the parent run.
    stopper: list = []
    if stage.backend != "simulator":  # simulated seeds run inside the trial and end with it
        from sweep.group_trial import GroupStopper

        stopper.append(GroupStopper())
    return [
        *stopper,
        SweepProgress(total_steps=stage.max_step(), interval_s=15.0),
        MLflowSweepCallback(
            tracking_uri=stage.tracking_uri, experiment_name=stage.experiment, sweep_name=stage.name,
            sweep_config=stage.to_dict(), total_steps=stage.max_step(), seeds=list(stage.seeds),
            search_space=STAGE, parent_run_id=parent_run_id, stage=f"{STAGE}-{label}", parent_sweep=parent.name,
            pending_path=storage.join(stage.sweep_dir, PENDING_MLFLOW_FILE),
        ),
    ]


def stage_state(stage: SweepConfig) -> str:
    """`absent`, `done` (every planned group ended) or `partial` (started, to be resumed)."""
    from sweep.tuner import sweep_exists

    if not sweep_exists(stage.storage, stage.name):
        return "absent"
    groups = read_groups(stage.sweep_dir)
    planned = len(stage.baselines) + stage.budget
    ended = [g for g in groups if g.outcome.status != "running"]
    return "done" if len(ended) >= planned else "partial"


def run_stage(stage: SweepConfig, groups: list[dict[str, Any]], parent: SweepConfig, label: str,
              parent_run_id: str | None, scratch_dir: str | None = None):
    """Start the stage sweep (a new Tuner with a `FixedGroupSearcher`), or resume it if it was started."""
    import ray
    from ray import tune

    from sweep.searcher import FixedGroupSearcher
    from sweep.tuner import (SWEEP_FILE, TUNE_DIR, TUNER_FILE, _trainable, concurrency, init_ray, prepare_data,
                             restore_tuner, stop_gracefully_on_signals, trial_fixed_config)

    prepare_data(stage)
    init_ray()
    stop_gracefully_on_signals()
    max_concurrent = concurrency(stage, ray.cluster_resources())
    saved_config = storage.join(stage.sweep_dir, SWEEP_FILE)
    if storage.exists(storage.join(stage.sweep_dir, TUNE_DIR, TUNER_FILE)):
        if not storage.exists(saved_config):  # killed between the Tuner's creation and writing sweep.yaml
            storage.write_text(saved_config, yaml.safe_dump(stage.to_dict(), sort_keys=False))
        return restore_tuner(stage).fit()
    if not is_remote(stage.storage):
        os.makedirs(stage.sweep_dir, exist_ok=True)
    searcher = FixedGroupSearcher(groups, seeds=list(stage.seeds), fixed=trial_fixed_config(stage, scratch_dir))
    tuner = tune.Tuner(
        _trainable(stage),
        # As in sweep.tuner.build_tuner, minus the scheduler: every group runs to its horizon.
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=len(groups), max_concurrent_trials=max_concurrent,
                                    reuse_actors=stage.backend == "simulator"),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=stage.sweep_dir, callbacks=_stage_callbacks(stage, parent, parent_run_id, label),
            verbose=0, failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # as sweep.tuner.build_tuner: all kept
        ),
    )
    # sweep.yaml only once the Tuner (and its tuner.pkl) exists: `sweep resume` on a sweep.yaml without a
    # tuner.pkl would start a fresh TPE sweep under this stage's name instead of its fixed groups.
    storage.write_text(saved_config, yaml.safe_dump(stage.to_dict(), sort_keys=False))
    return tuner.fit()


# ---- the whole confirmation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfirmPlan:
    """What a confirmation runs: the sweep, its finalists, the seeds and one stage config per horizon."""

    sweep: SweepConfig
    finalists: tuple[SweepGroup, ...]
    seeds: tuple[int, ...]
    factors: tuple[float, ...]
    stages: tuple[SweepConfig, ...]
    groups: tuple[dict[str, Any], ...]
    reuse_sweep_seeds: bool = False

    @property
    def report_dir(self) -> str:
        """Where the report files go: `<storage>/<NAME>/confirm/`."""
        return storage.join(self.sweep.sweep_dir, STAGE)


def plan_confirmation(storage_path: str, name: str, top: int, factors: Sequence[float], n_seeds: int,
                      reuse_sweep_seeds: bool = False) -> ConfirmPlan:
    """Validate everything and decide the stages before anything runs (bad input: `ConfigError`)."""
    from sweep.tuner import load_saved_config

    if top < 1:
        raise ConfigError("--top", f"must be >= 1, got {top}")
    cfg = replace(load_saved_config(storage_path, name), storage=storage_path)
    finalists = select_finalists(read_groups(cfg.sweep_dir), top)
    if not finalists:
        raise ConfigError("name", f"sweep {name!r} has no finished searched group to confirm")
    seeds = confirm_seeds(cfg.seeds, n_seeds, reuse_sweep_seeds)
    stages = tuple(stage_config(cfg, f, seeds, len(finalists)) for f in factors)
    groups = tuple(stage_groups(finalists, cfg.baselines))
    return ConfirmPlan(cfg, tuple(finalists), seeds, tuple(factors), stages, groups, reuse_sweep_seeds)


def run_confirmation(plan: ConfirmPlan, overwrite: bool = False, scratch_dir: str | None = None) -> dict[str, list[SweepGroup]]:
    """Run (or resume, or skip when done) every stage; returns horizon label -> the stage's groups, up to the
    first stage that was cut short.

    A stage already in storage must have been planned the same way (same finalists, seeds and horizon),
    unless `overwrite` deletes it first.
    """
    from sweep.mlflow_tracking import find_sweep_run
    from sweep.tuner import SWEEP_FILE

    parent_run_id = find_sweep_run(plan.sweep.tracking_uri, plan.sweep.experiment, plan.sweep.name)
    out: dict[str, list[SweepGroup]] = {}
    for factor, stage in zip(plan.factors, plan.stages):
        label = horizon_label(factor)
        state = stage_state(stage)
        if state != "absent" and overwrite:
            storage.remove_tree(stage.sweep_dir)
            state = "absent"
        text = storage.read_text(storage.join(stage.sweep_dir, SWEEP_FILE)) if state != "absent" else None
        if text is not None:
            saved = parse_saved_config(text, storage.join(stage.sweep_dir, SWEEP_FILE)).to_dict()
            if saved.get("seeds") != list(stage.seeds) or saved.get("budget") != stage.budget:
                raise ConfigError("--seeds", f"stage {stage.name} exists with seeds {saved.get('seeds')} and "
                                  f"{saved.get('budget')} finalists; rerun with the same --top/--seeds or --overwrite")
        if state != "done":
            print(f"confirm: stage {stage.name} ({stage.max_step()} steps, {len(plan.groups)} groups x "
                  f"{len(stage.seeds)} seeds){' resumed' if state == 'partial' else ''}", flush=True)
            run_stage(stage, list(plan.groups), plan.sweep, label, parent_run_id, scratch_dir)
        else:
            print(f"confirm: stage {stage.name} already done", flush=True)
        out[label] = read_groups(stage.sweep_dir)
        if sum(g.outcome.status != "running" for g in out[label]) < len(plan.groups):
            break  # cut short (Ctrl-C): Tune returned early; the next stage waits for the next run
    return out
