"""MLflow, laid out for the compare view: a driver-side Tune callback.

Layout (every run carries the tag ``schedsweep.sweep`` = the sweep name, and ``schedsweep.kind``):

    sweep run  (kind=sweep)   params: the flattened sweep config; tags: git commit, package versions,
      |                        search space, seeds; artifacts: sweep_config.yaml, leaderboard.txt
      +-- group run  (kind=group, one per Tune trial = seed group; tag schedsweep.group = trial id)
            |   params: the schedule's flat_params(), group id, baseline preset, seeds
            |   metrics: the group's aggregate curves (step = our `step`), then the final
            |            val_loss/val_bpb mean, std and 95 % t-interval over seeds
            |   tags: schedsweep.status = running | finished | pruned | diverged | error
            |   artifacts: schedule.png
            +-- seed run  (kind=seed, tag schedsweep.seed; one per (group, seed))
                    params: the schedule's flat_params(), seed, group id, baseline preset
                    metrics: train_loss, val_loss, val_bpb, lr, tokens_per_s, mfu at MLflow step = `step`

Why a Tune callback on the driver: trial processes then need no MLflow access (an sqlite file works)
and each result costs one `log_batch` request per run instead of one request per metric.

Resume: runs are found by their tags (sweep, group, seed), never recreated; the last logged step is
kept in a tag written in the same batch, so results replayed after a restore are not logged twice and
MLflow steps simply continue. Credentials come only from the environment (MLflow reads
MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN itself); secret-looking config keys and passwords in URIs
are never logged (`sweep.tracking.params`).
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import asdict
from typing import Any, Iterable, Mapping, Sequence

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from sweep.core.outcome import describe_config, group_label, outcome_from_result, outcome_from_trial
from sweep.core.secrets import redact_config, redact_uri
from sweep.core.sqlite_wal import use_write_ahead_log
from sweep.core.status import RUNNING, TUNE_ENDED
from sweep.tracking.artifacts import log_group_schedule, log_top_schedules
from sweep.tracking.params import (MAX_PARAM_CHARS, flatten, git_commit, loggable_params, package_versions,
                                   schedule_params)
from sweep.tracking.pending import HeldBackWrites, TrialView, Write
from sweep.tracking.progress import leaderboard
from sweep.tracking.queries import last_logged_step, search_all
from sweep.tracking.tags import (GROUP_METRICS, KIND_GROUP, KIND_SEED, KIND_SWEEP, RUN_STATE, SEED_METRICS, TAG_GROUP,
                                 TAG_KIND, TAG_LABEL, TAG_PARENT, TAG_PARENT_SWEEP, TAG_SEED, TAG_STAGE,
                                 TAG_EXPERIMENT_KIND, TAG_STATUS, TAG_SWEEP, TAG_SWEEP_ID, TAG_TRAIN_RUN,
                                 TRAINING_EXPERIMENT, seed_status)

logger = logging.getLogger(__name__)

_BATCH_PARAMS = 100  # MLflow's limit on params per log_batch


def _metric_value(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and inf are not logged as metrics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class MLflowSweepCallback(Callback):
    """Logs a sweep to MLflow from the Tune driver (see the module docstring for the layout).

    Args:
        tracking_uri: e.g. ``sqlite:///sweeps/mlflow.db`` or ``http://mlflow:5000``.
        experiment_name: created if missing.
        sweep_name: the sweep's name (tag ``schedsweep.sweep``, the sweep run's name).
        sweep_id: the resume key, made here unless given. It travels inside the pickled callback, so
            `Tuner.restore` finds and reuses the same runs, while a new sweep under an old name (e.g.
            ``sweep run --overwrite``) gets new ones instead of writing into the old sweep's runs.
        sweep_config: the whole sweep config (logged flattened as params and as a YAML artifact).
        total_steps: the trainer's total steps (x range of the schedule plots); else the last step seen.
        seeds, search_space: shown as tags on the sweep run.
        strict: re-raise MLflow errors. Off by default: a tracking-server hiccup should not end a
            long sweep (the error is logged and the next result tries again); tests turn it on.
        parent_run_id, stage, parent_sweep: for a stage of another sweep (the confirmation stage): the
            stage's sweep run is nested under that sweep's run `parent_run_id` and tagged with `stage` and
            `parent_sweep`. Unset for a plain sweep.
        pending_path: where writes held back during an outage of the tracking server are kept, so that a
            driver killed meanwhile leaves them to the next start (`sweep.tracking.pending`); None: memory only.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, sweep_name: str, sweep_config: Mapping[str, Any],
                 total_steps: int | None = None, seeds: Sequence[int] | None = None,
                 search_space: str | None = None, artifact_location: str | None = None, strict: bool = False,
                 sweep_id: str | None = None, parent_run_id: str | None = None, stage: str | None = None,
                 parent_sweep: str | None = None, pending_path: str | None = None):
        self.parent_run_id = parent_run_id
        self.stage = stage
        self.parent_sweep = parent_sweep
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.sweep_name = sweep_name
        self.sweep_id = sweep_id or uuid.uuid4().hex
        self.sweep_config = dict(sweep_config)
        self.total_steps = total_steps
        self.seeds = list(seeds) if seeds is not None else None
        self.search_space = search_space
        self.artifact_location = artifact_location
        self.strict = strict
        self.pending_path = pending_path
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.sweep_run_id: str | None = None
        # (kind, group, seed) -> run id, and run id -> last logged step
        self._runs: dict[tuple[str, str, str], str] = {}
        self._last_step: dict[str, int] = {}
        self._tags_written: dict[str, dict[str, str]] = {}  # run id -> the tags `_log_metrics` wrote to it
        self._group_schedules: dict[str, Mapping[str, Any]] = {}
        self._orphans_checked = False
        # Every write, in order; held back (and saved in `pending_path`) while the store does not answer.
        self._writes = HeldBackWrites(self._apply, lambda: self._reachable(), getattr(self, "pending_path", None),
                                      self.strict)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the Tuner; clients and caches are rebuilt in setup().
        state = self.__dict__.copy()
        for key in ("_client", "_runs", "_last_step", "_tags_written", "_group_schedules", "experiment_id",
                    "sweep_run_id", "_writes"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _guard(self, what: str, fn, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            if self.strict:
                raise
            logger.warning("MLflow logging failed while %s; the sweep goes on", what, exc_info=True)

    def _in_order(self, what: str, op: str, **args: Any) -> None:
        """Make a write after every write held back before it, or hold it back too (`sweep.tracking.pending`):
        an outage of the tracking server, even one the driver dies in, loses nothing and keeps each run's
        steps in order."""
        self._writes.submit(Write(what, op, args))

    def _apply(self, write: Write) -> None:
        """Make one write (`Write.op`), from the JSON-able arguments `_in_order` was given."""
        args = write.args
        if write.op == "sweep_end":
            self._end_sweep([TrialView(**t) for t in args["trials"]])
            return
        trial = TrialView(**args["trial"])
        if write.op == "group":
            self._ensure_group(trial)
        elif write.op == "result":
            self._log_result(trial, args["result"])
        elif write.op == "group_end":
            self._end_group(trial, bool(args["errored"]))
        else:
            raise ValueError(f"unknown MLflow write {write.op!r}")

    def _reachable(self) -> bool:
        """Whether the tracking store answers a cheap read."""
        try:
            self.client.search_experiments(max_results=1)
            return True
        except Exception:
            return False

    # ---- Tune hooks -----------------------------------------------------------------------------

    def setup(self, **info: Any) -> None:
        # MLflow prints a "View run" URL line per ended run to stdout: 2 lines per seed run would drown the
        # progress lines in a CI log. The user's own setting wins.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # MLflow's HTTP client retries a refused request 7 times with doubling waits (minutes in all), inside
        # Tune's driver loop: a tracking server that is down would stall the whole sweep. Fail fast instead;
        # the writes are held back and sent again (`_in_order`).
        for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
            os.environ.setdefault(name, value)
        self._reset()
        self._guard("setting up the sweep run", self._setup)
        # Writes an earlier start held back and never made (it died while the store did not answer): first.
        if self._writes.load():
            self._writes.flush()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._orphans_checked:
            self._orphans_checked = True
            self._guard("removing runs of lost groups", self._delete_lost_runs, trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._in_order(f"starting {trial.trial_id}", "group", trial=_view(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._in_order(f"logging a result of {trial.trial_id}", "result", trial=_view(trial), result=dict(result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._in_order(f"ending {trial.trial_id}", "group_end", trial=_view(trial), errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._in_order(f"ending {trial.trial_id}", "group_end", trial=_view(trial), errored=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._in_order("ending the sweep run", "sweep_end", trials=[_view(t) for t in trials])
        # Writes still held back: give the tracking server a while to come back before the driver ends.
        deadline = time.monotonic() + float(os.environ.get("SCHEDSWEEP_MLFLOW_FLUSH_S", "300"))
        while self._writes and time.monotonic() < deadline:
            time.sleep(5.0)
            self._writes.flush()
        if self._writes:
            where = f"; they are kept in {self.pending_path} and made by `sweep resume`" if self.pending_path else ""
            logger.error("MLflow did not answer: %d writes were not made%s (the sweep's own results are in its Tune "
                         "folder)", len(self._writes), where)

    # ---- sweep run ------------------------------------------------------------------------------

    def _setup(self) -> None:
        exp = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            self.experiment_name, artifact_location=self.artifact_location,
            tags={TAG_EXPERIMENT_KIND: TRAINING_EXPERIMENT})
        if exp is not None and TAG_EXPERIMENT_KIND not in exp.tags:  # made by an older version, or by hand
            self.client.set_experiment_tag(self.experiment_id, TAG_EXPERIMENT_KIND, TRAINING_EXPERIMENT)
        use_write_ahead_log(self.tracking_uri)  # a local sqlite store: cheaper commits (sweep.core.sqlite_wal)
        self._index_existing_runs()
        key = (KIND_SWEEP, "", "")
        if key in self._runs:
            self.sweep_run_id = self._runs[key]
            self.client.update_run(self.sweep_run_id, status="RUNNING")
            self.client.set_tag(self.sweep_run_id, "schedsweep.resumed_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            return
        commit = git_commit()
        tags = {TAG_SWEEP: self.sweep_name, TAG_SWEEP_ID: self.sweep_id, TAG_KIND: KIND_SWEEP,
                "mlflow.runName": self.sweep_name,
                "schedsweep.git_commit": commit, "mlflow.source.git.commit": commit.removesuffix("-dirty"),
                "schedsweep.tracking_uri": redact_uri(self.tracking_uri)}
        tags.update({f"schedsweep.version.{k}": v for k, v in package_versions().items()})
        if self.seeds is not None:
            tags["schedsweep.seeds"] = ",".join(str(s) for s in self.seeds)
        if self.search_space is not None:
            tags["schedsweep.search_space"] = self.search_space
        if self.parent_run_id is not None:
            tags[TAG_PARENT] = self.parent_run_id
        tags.update({k: v for k, v in ((TAG_STAGE, self.stage), (TAG_PARENT_SWEEP, self.parent_sweep)) if v})
        run = self.client.create_run(self.experiment_id, run_name=self.sweep_name, tags=tags)
        self.sweep_run_id = run.info.run_id
        self._runs[key] = self.sweep_run_id
        params = [Param(k, v) for k, v in sorted(loggable_params(self.sweep_config).items())]
        for i in range(0, len(params), _BATCH_PARAMS):
            self.client.log_batch(self.sweep_run_id, params=params[i:i + _BATCH_PARAMS])
        self.client.log_text(self.sweep_run_id, yaml.safe_dump(redact_config(self.sweep_config), sort_keys=False),
                             "sweep_config.yaml")

    def _index_existing_runs(self) -> None:
        """Find this sweep's runs (any state) so a resumed sweep reuses them."""
        runs = search_all(self.client, self.experiment_id, f"tags.`{TAG_SWEEP_ID}` = '{self.sweep_id}'")
        for run in runs:
            tags = run.data.tags
            key = (tags.get(TAG_KIND, ""), tags.get(TAG_GROUP, ""), tags.get(TAG_SEED, ""))
            self._runs.setdefault(key, run.info.run_id)  # oldest first: a stray duplicate never wins
            step = last_logged_step(run)  # where the run stands
            if step is not None:
                self._last_step[run.info.run_id] = step

    def _delete_lost_runs(self, trials: list) -> None:
        """Group and seed runs of groups Tune does not know (at the first step of a run, restored or new).

        A driver killed between creating a group's runs and Tune's next experiment checkpoint leaves runs for
        a Tune trial that the restore never brings back: Tune starts a new trial (a new id) in its place. The
        lost group's runs would stand beside the new one's as a duplicate group, so they are deleted (MLflow's
        soft delete: the store keeps them, searches skip them)."""
        known = {str(t.trial_id) for t in trials}
        for (kind, group, _), run_id in list(self._runs.items()):
            if kind in (KIND_GROUP, KIND_SEED) and group not in known:
                logger.warning("deleting MLflow %s run %s of group %s, lost in a driver kill", kind, run_id, group)
                self.client.delete_run(run_id)
                del self._runs[(kind, group, _)]

    def _end_sweep(self, trials: list) -> None:
        if self.sweep_run_id is None:
            return
        outcomes = [outcome_from_trial(t) for t in trials]
        self.client.log_text(self.sweep_run_id, leaderboard(outcomes, title=f"Sweep {self.sweep_name}"),
                             "leaderboard.txt")
        self._guard("plotting the best schedules", log_top_schedules, self.client, self.sweep_run_id,
                    {str(t.trial_id): (t.config or {}).get("schedule") for t in trials}, outcomes, self.total_steps)
        # Trials still pending or running mean Tune was interrupted: the sweep is not done.
        done = all(t.status in TUNE_ENDED for t in trials)
        self.client.set_terminated(self.sweep_run_id, status="FINISHED" if done else "KILLED")

    # ---- group and seed runs --------------------------------------------------------------------

    def _get_or_create(self, kind: str, group: str, seed: str, parent: str, name: str, tags: dict[str, str],
                       params: Mapping[str, Any]) -> str:
        key = (kind, group, seed)
        run_id = self._runs.get(key)
        if run_id is not None:
            # Resumed group: the same run goes on.
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, TAG_STATUS, str(RUNNING))
            return run_id
        all_tags = {TAG_SWEEP: self.sweep_name, TAG_SWEEP_ID: self.sweep_id, TAG_KIND: kind, TAG_GROUP: group,
                    TAG_PARENT: parent, TAG_STATUS: str(RUNNING), "mlflow.runName": name, **tags}
        if seed:
            all_tags[TAG_SEED] = seed
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()])
        self._runs[key] = run_id
        return run_id

    def _ensure_group(self, trial: Any) -> str:
        if self.sweep_run_id is None:
            self._setup()  # the store was unreachable at setup (non-strict): try again now
        group = str(trial.trial_id)
        key = (KIND_GROUP, group, "")
        if key in self._runs and group in self._group_schedules:
            return self._runs[key]
        config = trial.config
        schedule = config.get("schedule") or {}
        self._group_schedules[group] = schedule
        label = group_label(config)
        try:
            shape = schedule_params(schedule)
        except Exception:
            if self.strict:
                raise
            # Still log the shape, as the raw dict, rather than lose the group's runs.
            logger.warning("could not parse the schedule of %s; logging it unparsed", group, exc_info=True)
            shape = {f"schedule.{k}": v for k, v in flatten(schedule).items()}
        common = {**shape, "group_id": group, "baseline": config.get("baseline") or ""}
        if config.get("source_group"):
            common["source_group"] = str(config["source_group"])  # a confirmation stage's finalist
        seeds = [str(s) for s in config.get("seeds", [])]
        # Run names say the shape in words (the MLflow UI's run list shows little else), the id last.
        name = f"{describe_config(config, label)} ({group})"
        group_run = self._get_or_create(KIND_GROUP, group, "", self.sweep_run_id, name,
                                        {TAG_LABEL: label}, {**common, "seeds": ",".join(seeds)})
        for seed in seeds:
            self._get_or_create(KIND_SEED, group, seed, group_run, f"{name} seed {seed}",
                                {TAG_LABEL: label, "schedsweep.sweep_run_id": self.sweep_run_id},
                                {**common, "seed": seed})
        return group_run

    def _log_metrics(self, run_id: str, values: Mapping[str, Any], names: Iterable[str], step: int,
                     tags: Mapping[str, str] | None = None) -> None:
        """One `log_batch` with the metrics of one step, unless that step was already logged, and the `tags`
        that changed since the run's last batch.

        No per-step tag rides along: the run's latest metric steps (`_index_existing_runs`) say where a resumed
        run stands, and a tag in every batch made the sqlite store's `log_batch` ~35 % dearer (BENCHMARKS.md)."""
        if step <= self._last_step.get(run_id, -1):
            return  # replayed after a restore
        now = int(time.time() * 1000)
        metrics = [Metric(name, v, now, step) for name in names if (v := _metric_value(values.get(name))) is not None]
        if not metrics:
            return
        known = self._tags_written.setdefault(run_id, {})
        changed = {k: v for k, v in (tags or {}).items() if known.get(k) != v}
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in changed.items()])
        known.update(changed)
        self._last_step[run_id] = step

    def _log_result(self, trial: Any, result: Mapping[str, Any]) -> None:
        group_run = self._ensure_group(trial)
        step = int(result.get("step", 0) or 0)
        for seed, values in (result.get("per_seed") or {}).items():
            run_id = self._runs.get((KIND_SEED, str(trial.trial_id), str(seed)))
            if run_id is not None:
                # The seed's Ray Train run (where its checkpoints live) rides along as a tag.
                train_run = {TAG_TRAIN_RUN: str(values["train_run"])} if values.get("train_run") else None
                self._log_metrics(run_id, values, SEED_METRICS, int(values.get("step", step) or step), train_run)
        self._log_metrics(group_run, result, GROUP_METRICS, step)

    def _end_group(self, trial: Any, errored: bool) -> None:
        group = str(trial.trial_id)
        group_run = self._ensure_group(trial)
        last = trial.last_result or {}
        outcome = outcome_from_result(group, trial.config, last, errored=errored, ended=True)
        per_seed = last.get("per_seed") or {}
        for seed in (str(s) for s in trial.config.get("seeds", [])):
            run_id = self._runs.get((KIND_SEED, group, seed))
            if run_id is not None:
                state = seed_status(outcome.status, (per_seed.get(seed) or {}).get("status"))
                self.client.set_tag(run_id, TAG_STATUS, str(state))
                self.client.set_terminated(run_id, status=RUN_STATE[state])

        metrics = {"final_step": float(outcome.step)}
        for name in ("val_loss", "val_bpb"):
            stats = outcome.stats(name)
            if stats is not None:
                metrics.update({f"final_{k}": v for k, v in stats.as_metrics(name).items()})
        now = int(time.time() * 1000)
        self.client.log_batch(group_run, metrics=[Metric(k, v, now, outcome.step) for k, v in metrics.items()],
                              tags=[RunTag(TAG_STATUS, str(outcome.status))])
        self.client.set_terminated(group_run, status=RUN_STATE[outcome.status])
        # A plotting problem must not leave the run's end state unwritten, hence after it.
        self._guard(f"plotting the schedule of {group}", log_group_schedule, self.client, group_run,
                    self._group_schedules.get(group) or {}, outcome, self.total_steps)
        # Should Tune start this trial again (a retry after an error), its runs go back to RUNNING.
        self._group_schedules.pop(group, None)


def _view(trial: Any) -> dict[str, Any]:
    """A Tune trial as a held-back write keeps it (`TrialView`, as a dict)."""
    return asdict(TrialView.of(trial))


