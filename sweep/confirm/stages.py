"""Running a confirmation's stages: one stage sweep per horizon, through the engine's one Tuner assembly.

Each stage is a sweep named `NAME.confirm-<factor>x` with a `FixedGroupSearcher` (the finalists and the
baselines), no ASHA, and its MLflow sweep run nested under the confirmed sweep's. A stage already started is
resumed, one that is done is skipped.
"""

from __future__ import annotations

from typing import Any

from search_spaces.errors import ConfigError
from sweep.config import SweepConfig, parse_saved_config
from sweep.config.confirm_settings import horizon_label
from sweep.config.trial import trial_spec
from sweep.confirm.plan import STAGE, ConfirmPlan, read_groups
from sweep.core import layout, storage
from sweep.core.outcome import GroupOutcome
from sweep.engine.ray_session import init_ray, stop_gracefully_on_signals
from sweep.engine.resources import concurrency
from sweep.engine.searcher import FixedGroupSearcher
from sweep.engine.tuner import StageLink, new_tuner, prepare_data, restore_tuner, write_saved_config
from sweep.tracking.queries import find_sweep_run


def stage_state(stage: SweepConfig) -> str:
    """`absent`, `done` (every planned group ended) or `partial` (started, to be resumed)."""
    if not layout.sweep_exists(stage.storage, stage.name):
        return "absent"
    planned = len(stage.baselines) + stage.budget
    ended = [g for g in read_groups(stage.sweep_dir) if g.ended]
    return "done" if len(ended) >= planned else "partial"


def run_stage(stage: SweepConfig, groups: list[dict[str, Any]], parent: SweepConfig, label: str,
              parent_run_id: str | None, scratch_dir: str | None = None):
    """Start the stage sweep (a new Tuner with a `FixedGroupSearcher`), or resume it if it was started."""
    import ray

    prepare_data(stage)
    init_ray()
    stop_gracefully_on_signals()
    max_concurrent = concurrency(stage, ray.cluster_resources())
    saved_config = storage.join(stage.sweep_dir, layout.SWEEP_FILE)
    if storage.exists(storage.join(stage.sweep_dir, layout.TUNE_DIR, layout.TUNER_FILE)):
        if not storage.exists(saved_config):  # killed between the Tuner's creation and writing sweep.yaml
            write_saved_config(stage)
        return restore_tuner(stage).fit()
    searcher = FixedGroupSearcher(groups, seeds=list(stage.seeds), fixed=trial_spec(stage, scratch_dir).to_config())
    link = StageLink(parent_run_id=parent_run_id, stage=f"{STAGE}-{label}", parent_sweep=parent.name,
                     search_space=STAGE)
    # No scheduler: every group runs to its horizon.
    tuner = new_tuner(stage, searcher, len(groups), max_concurrent, link=link)
    # sweep.yaml only once the Tuner (and its tuner.pkl) exists: `sweep resume` on a sweep.yaml without a
    # tuner.pkl would start a fresh TPE sweep under this stage's name instead of its fixed groups.
    write_saved_config(stage)
    return tuner.fit()


def run_confirmation(plan: ConfirmPlan, overwrite: bool = False,
                     scratch_dir: str | None = None) -> dict[str, list[GroupOutcome]]:
    """Run (or resume, or skip when done) every stage; returns horizon label -> the stage's groups, up to the
    first stage that was cut short.

    A stage already in storage must have been planned the same way (same finalists, seeds and horizon),
    unless `overwrite` deletes it first.
    """
    parent_run_id = find_sweep_run(plan.sweep.tracking_uri, plan.sweep.experiment, plan.sweep.name)
    out: dict[str, list[GroupOutcome]] = {}
    for factor, stage in zip(plan.factors, plan.stages):
        label = horizon_label(factor)
        state = stage_state(stage)
        if state != "absent" and overwrite:
            storage.remove_tree(stage.sweep_dir)
            state = "absent"
        saved_path = storage.join(stage.sweep_dir, layout.SWEEP_FILE)
        text = storage.read_text(saved_path) if state != "absent" else None
        if text is not None:
            saved = parse_saved_config(text, saved_path).to_dict()
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
        if sum(g.ended for g in out[label]) < len(plan.groups):
            break  # cut short (Ctrl-C): Tune returned early; the next stage waits for the next run
    return out
