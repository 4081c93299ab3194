"""The Tune function trainable for one seed group: one `TorchTrainer` per seed, run concurrently.

Each seed run is a Ray Train run named `<trial id>-seed<k>` under `<sweep>/train`, so after a kill and a
`Tuner.restore` it picks up its own latest checkpoint (Train V2 restores a run by name from storage, and the
worker passes `ray.train.get_checkpoint()` to `train(resume_from=...)`).

Reports travel from each run's Train controller to this trial through one `ray.util.queue.Queue` that
`SeedReportCallback.after_report` fills with `(seed, rank-0 metrics)`. The put is synchronous, and the
controller calls `after_report` before its run can end, so once a seed's `fit()` has returned, everything it
reported is already in the queue. The trial reports a group result to Tune for every step all seeds reached
(`GroupAggregator`) and the final one only after every `fit()` returned and the queue is empty: the final
report cannot race the seeds' last reports (a final report sent while seeds were still reporting once left a
trial hung for good).

After a restore, each seed run first says again every report saved in its checkpoint
(`trainable.report_history`), so group results that were never formed before the kill are formed now. Those
Tune already has are not sent again: after every result the trial records its step in
`<train storage>/<trial id>-group.json` (`emitted_step`), and a restarted trial starts its aggregator there.
"""

from __future__ import annotations

import json
from dataclasses import replace
import threading
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback
from ray.tune import Callback
from ray.util.queue import Empty, Queue

from sweep.config.script import DEFAULT_KEEP_CHECKPOINTS
from sweep.core import storage
from sweep.core.trial_spec import TrialSpec
from sweep.engine.aggregation import GroupAggregator, train_run_name
from sweep.engine.rung_metrics import COOLDOWN, RungScorer
from trainable.ray_trainable import train_worker
from trainable.run_control import StopSignal, default_scratch_dir
from trainable.startup_trace import mark

_POLL_S = 0.5


class SeedReportCallback(UserCallback):
    """Runs in a seed run's Train controller: forwards rank 0's metrics of every report to the group."""

    def __init__(self, queue: Queue, seed: int):
        self.queue = queue
        self.seed = seed

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        item = dict(metrics[0])
        if checkpoint is not None:
            item["checkpoint_path"] = checkpoint.path
        self.queue.put((self.seed, item), block=True)


def stop_signal_name(trial_id: str) -> str:
    """The name of a group's `StopSignal` actor, which the driver looks up to stop the group's seed runs."""
    return f"schedsweep-stop-{trial_id}"


class GroupStopper(Callback):
    """Driver-side Tune callback: when a group trial ends (ASHA stopped it, it diverged or failed), set its
    stop signal so its seed runs end at their next report.

    Without it the seed runs of a stopped group trained on until Ray reaped the trial's actor and, with it,
    their controllers: seconds, in which a tiny run reached its horizon (seen in the seed-group test).
    """

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop(trial)

    @staticmethod
    def _stop(trial: Any) -> None:
        try:
            signal = ray.get_actor(stop_signal_name(trial.trial_id))
        except ValueError:
            return  # the trial never started its seeds, or its actor is already gone
        signal.set.remote()


class _SeedRun(threading.Thread):
    """`trainer.fit()` in a thread; keeps the Result or the exception for the group trial."""

    def __init__(self, seed: int, trainer: TorchTrainer):
        super().__init__(name=f"seed-{seed}", daemon=True)
        self.seed, self.trainer = seed, trainer
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.trainer.fit()
        except BaseException as err:  # reported by the group trial, which fails the whole group
            self.error = err

    def last_metrics(self) -> dict[str, Any] | None:
        return dict(self.result.metrics) if self.result is not None and self.result.metrics else None


def seed_trainer_config(spec: TrialSpec, seed: int) -> dict[str, Any]:
    """The complete TrainConfig dict of one seed run: the sweep's trainer section, the group's schedule, and
    the seed for both initialisation and data order."""
    trainer = dict(spec.trainer or {})
    trainer["schedule"] = dict(spec.schedule)
    trainer["seed"] = int(seed)
    trainer["data_seed"] = int(seed)
    if spec.rung_metric == COOLDOWN and spec.probe_steps:
        # The trainer forks a cooldown probe at the first eval at or after each of ASHA's milestones and
        # reports val_loss_cooldown there (trainable.cooldown_probe).
        trainer["eval"] = {**(trainer.get("eval") or {}), "probe_steps": list(spec.probe_steps),
                           "probe_frac": spec.cooldown_frac}
    return trainer


def build_seed_trainer(spec: TrialSpec, trial_id: str, seed: int, queue: Queue,
                       stop_signal: Any = None) -> TorchTrainer:
    """The `TorchTrainer` of one seed run, reporting to `queue` and stopping when `stop_signal` is set."""
    res = spec.resources
    per_worker: dict[str, float] = {"CPU": res.cpus_per_worker}
    if res.use_gpu:
        per_worker["GPU"] = 1.0
    return TorchTrainer(
        train_worker,
        # Ray Train's boundary: the per-worker config is a dict (trainable.ray_trainable.train_worker).
        train_loop_config={
            "backend": spec.backend,
            "trainer": seed_trainer_config(spec, seed),
            "script": None if spec.script is None else dict(spec.script),
            "schedule": dict(spec.schedule),
            "seed": int(seed),
            "scratch_dir": spec.scratch_dir,
            "stop_signal": stop_signal,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers, use_gpu=res.use_gpu, resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            name=train_run_name(trial_id, seed),
            storage_path=spec.train_storage,
            callbacks=[SeedReportCallback(queue, seed)],
            # A dead worker (killed, out of memory, a lost node) restarts the seed run from its last checkpoint.
            failure_config=ray.train.FailureConfig(max_failures=res.max_failures),
            # A script may report a checkpoint at every eval; a resume needs only the latest. Ray deletes the
            # older ones past `script.keep_checkpoints` (a 137 MB sweep folder for 24 tiny runs without).
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=_kept_checkpoints(spec)),
        ),
    )


def _kept_checkpoints(spec: TrialSpec) -> int | None:
    """How many checkpoints a seed run keeps: `script.keep_checkpoints` for a script (2 for a sweep saved before
    the setting existed), all for the built-in trainer (its checkpoints feed the confirmation's lm-eval)."""
    if spec.script is None:
        return None
    return int(spec.script.get("keep_checkpoints") or DEFAULT_KEEP_CHECKPOINTS)


def emitted_path(spec: TrialSpec, trial_id: str) -> str:
    """Where a group trial records the step of the last result it sent to Tune (next to its seed runs)."""
    return storage.join(spec.train_storage, f"{trial_id}-group.json")


def emitted_step(spec: TrialSpec, trial_id: str) -> int:
    """The step of the last result this group sent to Tune before a restart (-1: none)."""
    text = storage.read_text(emitted_path(spec, trial_id))
    return int(json.loads(text)["step"]) if text else -1


def _report(result: dict[str, Any], spec: TrialSpec, trial_id: str) -> None:
    tune.report(result)
    # After the report, not before: a kill in between sends this step once more after the restore (the
    # consumers skip steps they have), where the other order could lose it.
    storage.write_text(emitted_path(spec, trial_id), json.dumps({"step": int(result["step"])}))


def group_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: run the group's seeds and report group results (see module docstring).

    `config`: Tune's trial config, read as a `TrialSpec` (the searcher's `schedule`, `baseline` and `seeds`
    plus the sweep's fixed keys).
    """
    trial_id = tune.get_context().get_trial_id()
    mark("group_entered", trial=trial_id)
    spec = TrialSpec.from_config(config)
    # One scratch folder for every seed run of the group (each run's ranks must agree on it).
    spec = replace(spec, scratch_dir=spec.scratch_dir or default_scratch_dir())
    seeds = list(spec.seeds)
    queue = Queue(actor_options={"num_cpus": 0})
    # Named, so that GroupStopper on the driver can find it; owned by this trial's actor, so it also ends
    # (and the seed runs with it) when the actor goes.
    stop = StopSignal.options(name=stop_signal_name(trial_id), get_if_exists=True).remote()
    runs = [_SeedRun(s, build_seed_trainer(spec, trial_id, s, queue, stop)) for s in seeds]
    agg = GroupAggregator(seeds, {s: train_run_name(trial_id, s) for s in seeds}, spec.divergence_penalty,
                          RungScorer.from_spec(spec))
    # Restarted: results up to here reached Tune already; the seeds' replayed reports complete the rest.
    agg.last_emitted = emitted_step(spec, trial_id)
    for run in runs:
        run.start()
    mark("seeds_started", trial=trial_id)

    while True:
        # Read `alive` before the get: if nobody was alive then and the queue is empty now, it is drained.
        alive = any(run.is_alive() for run in runs)
        failed = next((run for run in runs if run.error is not None), None)
        if failed is not None:
            # One seed run failed: the group cannot complete, so fail now rather than after the others.
            raise RuntimeError(f"seed {failed.seed} of trial {trial_id} failed: {failed.error!r}") from failed.error
        try:
            seed, metrics = queue.get(block=True, timeout=_POLL_S)
        except Empty:
            if not alive:
                break
            continue
        for result in agg.add(seed, metrics):
            _report(result, spec, trial_id)
        if agg.diverged:
            # One diverged seed fails the group; the other seeds' runs end with this trial's actor.
            tune.report(agg.diverged_result())
            return

    failed = next((run for run in runs if run.error is not None), None)
    if failed is not None:
        raise RuntimeError(f"seed {failed.seed} of trial {trial_id} failed: {failed.error!r}") from failed.error
    tune.report(agg.finish({run.seed: run.last_metrics() for run in runs}))
