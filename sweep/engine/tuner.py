"""The only place a Tuner is assembled: group trials, a searcher, ASHA, the callbacks, and Tune's configs.

`run_sweep(cfg, mode)` is what `sweep run` and `sweep resume` call; a confirmation stage
(`sweep.confirm.stages`) calls `new_tuner` / `restore_tuner` with its own `FixedGroupSearcher`, no
scheduler and its MLflow runs nested under the confirmed sweep's (`StageLink`). The sweep folder's layout is
`sweep.core.layout`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from search_spaces.errors import ConfigError
from sweep.config import SweepConfig
from sweep.config.trial import trial_spec
from sweep.core import layout, storage
from sweep.core.secrets import config_secrets, install_log_redaction
from sweep.engine.group_trial import group_trial
from sweep.engine.preflight import check_before_start
from sweep.engine.ray_session import init_ray, logs_to_file, stop_gracefully_on_signals, stop_requested
from sweep.engine.resources import concurrency, group_resources
from sweep.engine.rung_metrics import RUNG_KEY
from sweep.engine.scheduler import PersistentASHA
from sweep.engine.scratch_cleanup import remove_left_scratch
from sweep.engine.searcher import MODE, GroupSearcher
from sweep.tracking.callback import MLflowSweepCallback
from sweep.tracking.progress import SweepProgress
from sweep.tracking.queries import sweep_id_of


def prepare_data(cfg: SweepConfig) -> None:
    """Prepare the bundled corpus once in the driver, before dozens of workers would each try."""
    if cfg.trainer is not None and cfg.trainer.data.bundled:
        cfg.trainer.data.resolve_dir()


@dataclass(frozen=True)
class StageLink:
    """How a confirmation stage's MLflow sweep run hangs under the sweep it confirms."""

    parent_run_id: str | None
    stage: str  # e.g. "confirm-2x" (tag schedsweep.stage)
    parent_sweep: str
    search_space: str = "confirm"  # what the stage's sweep run shows as its search space


def _trainable(cfg: SweepConfig):
    from ray import tune

    if cfg.runner.runs_in_trial:
        from sweep.engine.sim_trial import sim_group_trial

        # The seeds run inside the trial: its resources are the group's, and Tune queues groups by them.
        return tune.with_resources(sim_group_trial, {"cpu": group_resources(cfg).cpus})
    # The trial itself only coordinates; its seeds' Train workers reserve the real resources. Tune refuses
    # an empty request, hence a token amount of memory.
    return tune.with_resources(group_trial, {"cpu": 0, "memory": 64 * 1024 * 1024})


def callbacks(cfg: SweepConfig, sweep_id: str | None = None, link: StageLink | None = None) -> list:
    """The driver callbacks of a sweep or a confirmation stage: seed-run stopper, terminal progress, MLflow."""
    out: list = []
    if not cfg.runner.runs_in_trial:  # seeds that run inside the trial end with it
        from sweep.engine.group_trial import GroupStopper

        out.append(GroupStopper())
    out.append(SweepProgress(total_steps=cfg.max_step(), interval_s=15.0))
    stage = {} if link is None else {"parent_run_id": link.parent_run_id, "stage": link.stage,
                                     "parent_sweep": link.parent_sweep}
    out.append(MLflowSweepCallback(
        tracking_uri=cfg.tracking_uri, experiment_name=cfg.experiment, sweep_name=cfg.name,
        sweep_config=cfg.to_dict(), total_steps=cfg.max_step(), seeds=list(cfg.seeds),
        search_space=link.search_space if link else getattr(cfg.search_space, "name", "inline"),
        sweep_id=sweep_id,
        # Without a tracking server, MLflow's default artifact root is ./mlruns of the driver's working
        # folder, which differs between a run and its resume (a new Ray job, a new head) and dies with
        # the head: keep artifacts in the sweep folder instead (tests/sweep/engine/test_shared_storage.py).
        artifact_location=None if cfg.tracking_uri.startswith(("http://", "https://", "databricks"))
        else storage.join(cfg.sweep_dir, layout.ARTIFACTS_DIR),
        pending_path=storage.join(cfg.sweep_dir, layout.PENDING_MLFLOW_FILE),
        **stage,
    ))
    return out


def tpe_searcher(cfg: SweepConfig, scratch_dir: str | None = None, adopt_study: bool = False):
    """The sweep's searcher: baselines, then `budget` TPE shapes, Optuna told the truth."""
    return GroupSearcher(
        space=cfg.search_space, seeds=list(cfg.seeds), baselines=list(cfg.baselines), budget=cfg.budget,
        fixed=trial_spec(cfg, scratch_dir).to_config(), divergence_penalty=cfg.divergence_penalty,
        seed=cfg.optuna.seed, storage=cfg.optuna.storage, study_name=cfg.name, adopt_study=adopt_study,
    )


def asha(cfg: SweepConfig):
    """ASHA over the configured rung metric with its rungs kept in the sweep folder, or None when disabled."""
    if not cfg.scheduler.enabled:
        return None
    # max_t above the last step: ASHA stopping a trial exactly at max_t killed the Train controller
    # mid-shutdown (seen on Ray 2.60); finished groups end on their own. ASHA compares `rung_loss`
    # (the configured rung metric, sweep.engine.rung_metrics); Optuna still gets the final mean val_loss.
    return PersistentASHA(
        state_path=storage.join(cfg.sweep_dir, layout.ASHA_FILE), time_attr="step", metric=RUNG_KEY, mode=MODE,
        max_t=cfg.max_step() + 1, grace_period=cfg.scheduler.grace_period,
        reduction_factor=cfg.scheduler.reduction_factor,
    )


def new_tuner(cfg: SweepConfig, searcher: Any, num_samples: int, max_concurrent: int, scheduler: Any = None,
              sweep_id: str | None = None, link: StageLink | None = None):
    """A new Tuner for `cfg` (the sweep folder must not hold another sweep)."""
    from ray import tune

    return tune.Tuner(
        _trainable(cfg),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=num_samples, max_concurrent_trials=max_concurrent,
            # Simulated groups take milliseconds: a fresh actor per group (a process importing scipy) would
            # dominate. GPT groups keep fresh actors (their Train runs are owned by the trial's actor).
            reuse_actors=cfg.runner.runs_in_trial,
        ),
        run_config=tune.RunConfig(
            name=layout.TUNE_DIR, storage_path=cfg.sweep_dir, callbacks=callbacks(cfg, sweep_id, link), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            # Only simulated groups checkpoint through Tune (a few bytes each). All are kept: with num_to_keep,
            # Tune deletes a checkpoint that its last saved experiment state may still name, and a driver killed
            # before the next save could not restore that group ("does not exist on storage anymore").
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def build_tuner(cfg: SweepConfig, max_concurrent: int, scratch_dir: str | None = None, sweep_id: str | None = None,
                adopt_study: bool = False):
    """A new Tuner for the sweep `cfg`: TPE and ASHA. `sweep_id` and `adopt_study`: a start again after one
    that saved no Tune state goes on with its MLflow sweep run and Optuna trials."""
    return new_tuner(cfg, tpe_searcher(cfg, scratch_dir, adopt_study), len(cfg.baselines) + cfg.budget,
                     max_concurrent, scheduler=asha(cfg), sweep_id=sweep_id)


def restore_tuner(cfg: SweepConfig):
    """The Tuner of an interrupted sweep: finished groups kept, unfinished and errored ones continued."""
    from ray import tune

    return tune.Tuner.restore(
        storage.join(cfg.sweep_dir, layout.TUNE_DIR), trainable=_trainable(cfg), resume_unfinished=True,
        resume_errored=True,
    )


def write_saved_config(cfg: SweepConfig) -> None:
    """`sweep.yaml` in the sweep folder: what `sweep resume NAME` reads back."""
    if not storage.is_remote(cfg.storage):
        os.makedirs(cfg.sweep_dir, exist_ok=True)
    storage.write_text(storage.join(cfg.sweep_dir, layout.SWEEP_FILE), yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def discard_unsaved_start(cfg: SweepConfig) -> str | None:
    """Clear what a start that never saved Tune state left (Tune's folder, ASHA's rungs, seed-run folders) so
    the sweep starts again with its full budget; returns the sweep id of its MLflow sweep run to go on with
    (None when there is none). The Optuna study and the MLflow runs stay: the new start adopts them."""
    for part in (layout.TUNE_DIR, layout.ASHA_FILE, layout.TRAIN_DIR):
        path = storage.join(cfg.sweep_dir, part)
        if part == layout.ASHA_FILE:
            if storage.exists(path):
                storage.write_text(path, '{"rungs": [], "num_stopped": 0}')
        else:
            storage.remove_tree(path)
    try:
        return sweep_id_of(cfg.tracking_uri, cfg.experiment, cfg.name)
    except Exception:  # an unreachable store: the callback's own setup reports it
        return None


@dataclass(frozen=True)
class SweepEnd:
    """How a `sweep run` / `sweep resume` ended."""

    groups: int  # groups in Tune's result grid
    errored: int
    planned: int  # baselines + budget
    ended: int  # groups that ended (finished, stopped by ASHA, diverged or errored)
    stop_requested: bool  # a SIGINT / SIGTERM asked for a clean stop

    @property
    def cut_short(self) -> bool:
        """Stopped before every planned group ended: `sweep resume` goes on from here."""
        return self.stop_requested or self.ended < self.planned


def sweep(cfg: SweepConfig, mode: str = "new", verbose: bool = False) -> SweepEnd:
    """The whole of `sweep run` / `sweep resume`: refuse what can be refused before anything is created, keep
    secrets out of the output, prepare the bundled data once, run (or continue) the sweep.

    `verbose`: Ray's, Tune's and the workers' own output on the terminal too; without it they go to the
    sweep's log file (`log_file`) and the terminal shows the sweep's own lines only."""
    if mode == "new" and layout.sweep_exists(cfg.storage, cfg.name):
        raise ConfigError("name", f"a sweep named {cfg.name!r} already exists in {cfg.storage}; "
                                  "use --resume to continue it or --overwrite to start again")
    # Secrets from the environment or the config must not reach the driver's output (docs/cluster.md).
    install_log_redaction(config_secrets(cfg.to_dict()))
    check_before_start(cfg)  # before the bundled corpus is prepared: bad input creates nothing
    prepare_data(cfg)
    grid = run_sweep(cfg, mode, verbose=verbose)
    # Tune returns normally after Ctrl-C or SIGTERM (ray_session.stop_gracefully_on_signals) and reports the
    # groups it interrupted as terminated: the stop request itself says the sweep was cut short.
    return SweepEnd(groups=len(grid), errored=sum(r.error is not None for r in grid),
                    planned=len(cfg.baselines) + cfg.budget, ended=grid.num_terminated + grid.num_errors,
                    stop_requested=stop_requested())


def log_file(cfg: SweepConfig) -> str:
    """Where a sweep's driver writes Ray's and Tune's logs: `<sweep folder>/sweep.log`, or a file in the
    local temp folder when the sweep folder is remote (a log file is appended to; object stores cannot)."""
    if storage.is_remote(cfg.sweep_dir):
        import tempfile

        return os.path.join(tempfile.gettempdir(), f"schedsweep-{cfg.name}-{layout.LOG_FILE}")
    return os.path.join(cfg.sweep_dir, layout.LOG_FILE)


def run_sweep(cfg: SweepConfig, mode: str = "new", scratch_dir: str | None = None, verbose: bool = True):
    """Run (`new`), continue (`resume`) or restart (`overwrite`) the sweep `cfg`; returns Tune's ResultGrid.

    `new` refuses a name that already holds a sweep: a second Tuner with the same name would overwrite the
    first one's tuner.pkl (ray #35812). `verbose` False: Ray's and Tune's output goes to `log_file(cfg)`.
    """
    if mode not in ("new", "resume", "overwrite"):
        raise ValueError(f"mode must be new, resume or overwrite, got {mode!r}")
    exists = layout.sweep_exists(cfg.storage, cfg.name)
    if mode == "new" and exists:
        raise ConfigError(
            "name", f"a sweep named {cfg.name!r} already exists in {cfg.storage}; "
            "use --resume to continue it or --overwrite to start again",
        )
    if mode == "resume" and not exists:
        raise ConfigError("name", f"no sweep {cfg.name!r} to resume in {cfg.storage}")

    check_before_start(cfg)
    if mode == "overwrite" and exists:
        storage.remove_tree(cfg.sweep_dir)
    if verbose:
        return _start_and_fit(cfg, mode, exists, scratch_dir, verbose)
    log = log_file(cfg)
    fresh = not os.path.exists(os.path.dirname(log))
    try:
        # Tune's default output engine prints its experiment box, the TensorBoard hint and a block per trial
        # error with print(), whatever the Tuner's verbose=0 says; the older engine is silent at 0 and logs
        # trial errors (to the file). The sweep prints its own events and each error's reason. Set for this
        # sweep only: a caller in the same process (a test) must not inherit it.
        with logs_to_file(log), _environ(RAY_AIR_NEW_OUTPUT=os.environ.get("RAY_AIR_NEW_OUTPUT", "0")):
            return _start_and_fit(cfg, mode, exists, scratch_dir, verbose)
    except ConfigError:
        # Refused once Ray was up (the cluster too small for one group): bad input leaves nothing behind, so
        # a sweep folder made only for this log goes again.
        if fresh and os.listdir(os.path.dirname(log)) == [os.path.basename(log)]:
            os.remove(log)
            os.rmdir(os.path.dirname(log))
        raise


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_and_fit(cfg: SweepConfig, mode: str, exists: bool, scratch_dir: str | None, verbose: bool):
    import ray

    init_ray(log_to_driver=verbose)
    max_concurrent = concurrency(cfg, ray.cluster_resources())
    if mode == "resume" and storage.exists(storage.join(cfg.sweep_dir, layout.TUNE_DIR, layout.TUNER_FILE)) \
            and layout.tune_state_saved(cfg.sweep_dir):
        tuner = restore_tuner(cfg)
    elif mode == "resume" and storage.exists(storage.join(cfg.sweep_dir, layout.SWEEP_FILE)):
        # Started, but killed before Tune saved any state: start again, adopting the first start's MLflow
        # sweep run and Optuna trials (so nothing is asked or logged twice).
        sweep_id = discard_unsaved_start(cfg)
        tuner = build_tuner(cfg, max_concurrent, scratch_dir, sweep_id=sweep_id, adopt_study=True)
    else:
        write_saved_config(cfg)
        tuner = build_tuner(cfg, max_concurrent, scratch_dir)
    stop_gracefully_on_signals()
    results = tuner.fit()
    # What the last ASHA-stopped groups' seed runs left in their scratch folders (Tune tears a stopped group's
    # runs down before they can clean up); earlier ones went as later seed runs started on their nodes.
    remove_left_scratch(scratch_dir, (r.metrics.get("trial_id") for r in results if r.metrics))
    return results
