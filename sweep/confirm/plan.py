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
machinery (`sweep.engine.tuner`: group trials, the MLflow callback, resume), with a `FixedGroupSearcher` in place of
TPE. Its `sweep.yaml` is a normal sweep config (scheduler off, budget = number of finalists), so
`sweep resume NAME.confirm-2x` continues an interrupted stage just like a sweep, and running
`sweep confirm` again skips finished stages and resumes the rest. In MLflow each stage's sweep run is a child
of the original sweep's run, tagged `schedsweep.stage = confirm-2x`.

The report (`sweep.confirm.report`) and the downstream evaluation (`sweep.confirm.lm_eval`) come after.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from search_spaces.errors import ConfigError
from sweep.config import BACKENDS, SweepConfig, baseline_label, load_saved_config
from sweep.config.confirm_settings import horizon_label
from sweep.core import layout, storage
from sweep.core.outcome import GroupOutcome, outcome_from_trial, rank_groups

STAGE = "confirm"


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


# ---- the searched sweep's groups ---------------------------------------------------------------------------
def read_groups(sweep_dir: str) -> list[GroupOutcome]:
    """Every group in `<sweep_dir>/tune` with its config and last result (Tune's saved experiment state; no
    Ray cluster needed)."""
    from ray.tune import ExperimentAnalysis

    # No experiment state (never started, or killed before Tune saved one): no group ran to read back.
    if not layout.tune_state_saved(sweep_dir):
        return []
    return [outcome_from_trial(t) for t in ExperimentAnalysis(storage.join(sweep_dir, layout.TUNE_DIR)).trials]


def select_finalists(groups: Sequence[GroupOutcome], top: int) -> list[GroupOutcome]:
    """The `top` finished searched (non-baseline) groups with the lowest mean final val_loss (the ranking's
    order)."""
    return [r.group for r in rank_groups(groups)[0] if not r.group.is_baseline][:top]


# ---- stage configs -----------------------------------------------------------------------------------------
def scale_horizon(raw: dict[str, Any], factor: float) -> dict[str, Any]:
    """A sweep config dict (`SweepConfig.to_dict()` form) whose run horizon is `factor` times as long: its
    backend scales its own section (`trainer.horizon.steps` or `.tokens`, `simulator.total_steps`,
    `script.horizon_steps`)."""
    out = dict(raw)
    for name, backend in BACKENDS.items():
        if out.get(name) is not None:
            out[name] = backend.scale_horizon(out[name], factor)
            break
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


def stage_groups(finalists: Sequence[GroupOutcome], baselines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The stage's groups: baselines first (as in a sweep), then the finalists in rank order."""
    groups: list[dict[str, Any]] = [{"schedule": dict(b), "baseline": baseline_label(dict(b))} for b in baselines]
    for rank, g in enumerate(finalists, start=1):
        groups.append({"schedule": dict(g.config["schedule"]), "baseline": None, "source_group": g.group_id,
                       "finalist_rank": rank})
    return groups


def group_key(config: Mapping[str, Any]) -> str:
    """How a stage group is named across horizons: the baseline label, or the finalist's sweep group id."""
    return str(config.get("baseline") or config.get("source_group") or "?")


# ---- the whole confirmation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfirmPlan:
    """What a confirmation runs: the sweep, its finalists, the seeds and one stage config per horizon."""

    sweep: SweepConfig
    finalists: tuple[GroupOutcome, ...]
    seeds: tuple[int, ...]
    factors: tuple[float, ...]
    stages: tuple[SweepConfig, ...]
    groups: tuple[dict[str, Any], ...]
    reuse_sweep_seeds: bool = False

    @property
    def report_dir(self) -> str:
        """Where the report files go: `<storage>/<NAME>/confirm/`."""
        return storage.join(self.sweep.sweep_dir, layout.CONFIRM_DIR)


def plan_confirmation(storage_path: str, name: str, top: int, factors: Sequence[float], n_seeds: int,
                      reuse_sweep_seeds: bool = False) -> ConfirmPlan:
    """Validate everything and decide the stages before anything runs (bad input: `ConfigError`)."""
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


