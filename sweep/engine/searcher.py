"""`GroupSearcher`: Optuna TPE over schedule shapes, one suggestion per seed group, told the truth.

It is Ray's `OptunaSearch` (study, sampler, save/restore) with four changes:

* the trial config it emits is the contract's group config (`schedule`, `baseline`, `seeds`, plus the
  sweep's fixed keys), built from the `search_spaces` space's define-by-run `suggest`;
* baseline presets come first, one group each, with the same seeds; they are never told to Optuna;
* `budget` caps the number of searched shapes (then `Searcher.FINISHED`);
* a group reaches Optuna as COMPLETE only when its last result says `status == "finished"` (the mean final
  val_loss over all seeds); a group stopped early (ASHA) as PRUNED with its last value; a diverged group as
  FAIL, or COMPLETE with the configured penalty; an errored trial as FAIL. Stock OptunaSearch would call an
  ASHA-stopped trial COMPLETE with a partial value.

The penalty must never make divergence look good. The sweep config refuses one below the trainer's
ln(vocab_size) or the simulator's initial loss; for a script, whose losses are unknown in advance, a
penalty at or below the worst finished group seen so far is raised here to `PENALTY_MARGIN` x that loss
(with a warning), so TPE always ranks a diverged shape behind every shape that finished.

Intermediate values go to Optuna at our monotonic `step`, not `training_iteration` (which restarts after a
restore).

After a driver kill, the study (a database) can be ahead of the searcher state Tune saved with its last
experiment checkpoint: trials asked, even finished, for Tune trials that Tune never recorded and will not
restore. The study is the source of truth, so such *orphaned* trials are adopted, oldest first, by the next
new Tune trials instead of asking new ones: a running orphan goes on as the same Optuna trial with its
params; a finished one runs its params again for Tune's sake while Optuna keeps the verdict it has. So the
study ends with exactly `budget` trials, none left RUNNING and none duplicated. A sweep restarted from
nothing (`adopt_study=True`: Tune never saved any state) adopts every trial the study holds.

Tune writes its experiment state and then the searcher state: a kill between the two leaves trials that Tune
restores but the searcher never heard of. So each searched group's trial config carries its Optuna trial
number (`optuna_trial`), and a restore reconciles the searcher with the trials Tune restores
(`restore_from_dir`): Tune's trials are the truth for which groups exist, the study for what was told.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweep.core.sqlite_wal import use_write_ahead_log
from sweep.core.status import DIVERGED, FINISHED
from sweep.stats.seeds import is_finite_number

logger = logging.getLogger(__name__)

METRIC, MODE = "val_loss", "min"
RUNG_METRIC = "rung_loss"  # sweep.engine.rung_metrics.RUNG_KEY (not imported: no cycle through group results)
OPTUNA_TRIAL_KEY = "optuna_trial"  # in a searched group's trial config: its Optuna trial number
PENALTY_MARGIN = 1.1  # a penalty raised at run time: 10 % above the worst finished group


class _DefineByRun:
    """The define-by-run callable OptunaSearch wants (picklable: it is saved with the searcher)."""

    def __init__(self, space: Any):
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.suggest(trial)


class GroupSearcher(OptunaSearch):
    """Baselines first, then up to `budget` TPE shapes; see the module docstring for what Optuna is told."""

    def __init__(
        self,
        space: Any,
        seeds: list[int],
        baselines: list[dict],
        budget: int,
        fixed: dict[str, Any] | None = None,
        divergence_penalty: float | None = None,
        seed: int | None = 0,
        storage: str | None = None,
        study_name: str = "schedsweep",
        adopt_study: bool = False,
    ):
        sampler = optuna.samplers.TPESampler(seed=seed)
        ot_storage = optuna.storages.RDBStorage(storage) if storage else None
        if storage:
            use_write_ahead_log(storage)  # a local sqlite study: cheaper commits (sweep.core.sqlite_wal)
        super().__init__(
            space=_DefineByRun(space), metric=METRIC, mode=MODE, sampler=sampler,
            storage=ot_storage, study_name=study_name,
        )
        self._group_space = space
        self._seeds = [int(s) for s in seeds]
        self._all_baselines = [dict(b) for b in baselines]
        self._baselines_left = [dict(b) for b in baselines]
        self._budget = int(budget)
        self._searched = 0
        self._fixed = dict(fixed or {})
        self._penalty = divergence_penalty
        self._worst_finished: float | None = None  # the highest final loss of a finished searched group
        self._baseline_trials: dict[str, str] = {}  # Tune trial id -> preset label
        self._last_step: dict[str, int] = {}
        # Optuna trial numbers to hand to the next new Tune trials (see the module docstring).
        self._orphans: list[int] = [t.number for t in self.study.get_trials(deepcopy=False)] if adopt_study else []
        if self._orphans:
            # Seeded as the first start was, the sampler would propose the adopted trials' params again.
            self.study.sampler.reseed_rng()

    # -----------------------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None:
        if self._baselines_left:
            schedule = self._baselines_left.pop(0)
            self._baseline_trials[trial_id] = str(schedule["preset"])
            return self._config(schedule, baseline=str(schedule["preset"]))
        if trial_id not in self._optuna_trials:
            if self._searched >= self._budget:
                return Searcher.FINISHED
            orphans = getattr(self, "_orphans", [])  # a searcher pickled before this field: none
            self._optuna_trials[trial_id] = self._adopt(trial_id, orphans.pop(0)) if orphans else self.study.ask()
            self._searched += 1
        ot_trial = self._optuna_trials[trial_id]
        schedule = self._group_space.suggest(ot_trial)
        return {**self._config(schedule.to_dict(), baseline=None), OPTUNA_TRIAL_KEY: int(ot_trial.number)}

    def _adopt(self, trial_id: str, number: int) -> Any:
        """The orphaned Optuna trial `number` as `trial_id`'s: live if it still runs, else its fixed params."""
        logger.warning("Tune trial %s adopts orphaned Optuna trial %s", trial_id, number)
        return self._link(trial_id, number)

    def _link(self, trial_id: str, number: int) -> Any:
        """Optuna trial `number` as `trial_id`'s: live if it still runs, else its fixed params (told already)."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        if frozen.state == optuna.trial.TrialState.RUNNING:
            return _reattach(self.study, frozen)
        self._told.add(trial_id)  # told already: nothing more goes to Optuna for it
        return optuna.trial.FixedTrial(frozen.params, number)

    def _config(self, schedule: dict, baseline: str | None) -> dict:
        return {**self._fixed, "schedule": schedule, "baseline": baseline, "seeds": list(self._seeds)}

    def is_baseline(self, trial_id: str) -> bool:
        return trial_id in self._baseline_trials

    # -----------------------------------------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._optuna_trials or trial_id in self._told:
            return
        # What ASHA compared (schedule-aware at rungs), so a pruned group's last intermediate value, which
        # TPE ranks it by, is not the short-horizon-biased raw loss; the raw loss when there is none.
        value, step = result.get(RUNG_METRIC), result.get("step")
        if not is_finite_number(value):
            value = result.get(METRIC)
        if step is None or not is_finite_number(value) or step <= self._last_step.get(trial_id, -1):
            return  # a repeat after a restore, or a diverged result with no finite value
        self._last_step[trial_id] = int(step)
        self._report(trial_id, float(value), int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._optuna_trials or trial_id in self._told:
            return  # baselines are not Optuna trials
        state, value = self.verdict(result, error)
        ot_trial = self._optuna_trials[trial_id]
        if state == optuna.trial.TrialState.PRUNED and value is not None and trial_id not in self._last_step:
            # Optuna takes a pruned trial's value from its last intermediate value.
            self._report(trial_id, value, int((result or {}).get("step", 0)))
        if state == optuna.trial.TrialState.COMPLETE and (result or {}).get("status") == FINISHED:
            worst = getattr(self, "_worst_finished", None)  # a searcher pickled before this field: None
            self._worst_finished = value if worst is None else max(worst, value)
        try:
            self.study.tell(ot_trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        except (RuntimeError, ValueError) as err:
            # A group that completed after the last saved searcher state but before a driver kill is run
            # once more on resume; a database-backed study already holds its verdict.
            logger.warning("Optuna trial %s not told again: %s", ot_trial.number, err)
        self._told.add(trial_id)

    def _report(self, trial_id: str, value: float, step: int) -> None:
        """An intermediate value to Optuna, unless the study already holds the trial as finished.

        The study's storage is the source of truth for what was told: after a driver kill, Tune restores a
        searcher pickled before the study's last write and replays results of trials the database has
        already closed; Optuna refuses to update those (UpdateFinishedTrialError), and they need nothing."""
        try:
            self._optuna_trials[trial_id].report(value, step)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.info("Optuna trial %s is already finished in the study: replayed result skipped",
                        self._optuna_trials[trial_id].number)
            self._told.add(trial_id)

    def verdict(self, result: dict | None, error: bool) -> tuple[optuna.trial.TrialState, float | None]:
        """What Optuna is told about a group that ended with last result `result`."""
        TrialState = optuna.trial.TrialState
        if error or not result:
            return TrialState.FAIL, None
        status = result.get("status")
        value = result.get(METRIC)
        if status == FINISHED and is_finite_number(value):
            return TrialState.COMPLETE, float(value)
        if status == DIVERGED or (status == FINISHED and not is_finite_number(value)):
            if self._penalty is not None:
                return TrialState.COMPLETE, self.penalty()
            return TrialState.FAIL, None
        return TrialState.PRUNED, float(value) if is_finite_number(value) else None

    def penalty(self) -> float:
        """The value a diverged group is told as: the configured penalty, raised above the worst finished group."""
        penalty = float(self._penalty)
        worst = getattr(self, "_worst_finished", None)
        if worst is not None and penalty <= worst:
            raised = PENALTY_MARGIN * worst
            logger.warning("divergence_penalty %g is not above the worst finished group's loss %g: a diverged group "
                           "is told as %g instead", penalty, worst, raised)
            return raised
        return penalty

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Tune's restore (the newest searcher state in `checkpoint_dir`), then reconciled with the trials of the
        newest experiment state there, which Tune restores (module docstring)."""
        super().restore_from_dir(checkpoint_dir)
        trials = saved_tune_trials(checkpoint_dir)
        if trials is not None and self._has_database:
            self._reconcile(trials)

    def _reconcile(self, trials: dict[str, dict]) -> None:
        """Make the searcher agree with Tune's restored trials (trial id -> config): which groups exist, which
        baselines were emitted, which Optuna trial each searched group runs; the rest of the study is orphaned."""
        for tid in [t for t in self._optuna_trials if t not in trials]:
            del self._optuna_trials[tid]  # a group Tune lost: its Optuna trial becomes an orphan
        linked: set[int] = set()
        emitted: list[str] = []
        for tid, config in trials.items():
            if config.get("baseline"):
                emitted.append(str(config["baseline"]))
                self._baseline_trials[tid] = str(config["baseline"])
                continue
            number = config.get(OPTUNA_TRIAL_KEY)
            if number is None:  # a trial from before this key existed: keep what the searcher state says
                if tid in self._optuna_trials:
                    linked.add(int(self._optuna_trials[tid].number))
                continue
            if tid not in self._optuna_trials or int(self._optuna_trials[tid].number) != int(number):
                logger.warning("Tune trial %s runs Optuna trial %s, which the saved searcher state missed", tid, number)
                self._optuna_trials[tid] = self._link(tid, int(number))
            linked.add(int(number))
        self._searched = len(self._optuna_trials)
        configured = getattr(self, "_all_baselines", None)  # None: a searcher pickled before this field
        if configured is not None:
            # The baselines still to emit: the configured ones less those Tune has (one each, in order).
            left, self._baselines_left = list(emitted), []
            for b in configured:
                if str(b["preset"]) in left:
                    left.remove(str(b["preset"]))
                else:
                    self._baselines_left.append(dict(b))
        self._orphans = [t.number for t in self.study.get_trials(deepcopy=False) if t.number not in linked]

    def restore(self, checkpoint_path: str) -> None:
        """Tune's searcher restore, plus: with a database-backed study, trials asked after the last saved
        searcher state (their Tune trials were never recorded) become orphans, adopted by the next new Tune
        trials (module docstring)."""
        super().restore(checkpoint_path)
        self._orphans = []
        if not self._has_database:
            return
        # The sampler's random state comes back as it was saved: the next asks would replay the params of
        # trials asked after that save (the study holds them already), so give it a fresh one.
        self.study.sampler.reseed_rng()
        known = {t.number for t in self._optuna_trials.values()}
        self._orphans = [t.number for t in self.study.get_trials(deepcopy=False) if t.number not in known]
        if self._orphans:
            logger.warning("Optuna trials %s were asked after the last saved searcher state: the next new groups "
                           "adopt them", self._orphans)

    # ---- OptunaSearch's state ----------------------------------------------------------------------------
    # Ray's OptunaSearch keeps its study, its Tune-trial -> Optuna-trial map and the trials it has told in
    # private fields, with no public accessors; this subclass must read and amend them (adopting orphans,
    # reconciling after a restore). They are read here only, so a Ray change breaks these four lines.
    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    @property
    def _optuna_trials(self) -> dict[str, Any]:
        return self._ot_trials

    @property
    def _told(self) -> set[str]:
        return self._completed_trials

    @property
    def _has_database(self) -> bool:
        return self._storage is not None

    def optuna_trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number behind a Tune trial (None for baselines)."""
        t = self._optuna_trials.get(trial_id)
        return None if t is None else t.number


def _reattach(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.trial.Trial:
    """A live handle on the running Optuna trial `frozen`. Optuna has no public way to reattach to a running
    trial by number: `Trial` takes the storage id, which a `FrozenTrial` keeps in a private field."""
    return optuna.trial.Trial(study, frozen._trial_id)


def saved_tune_trials(tune_dir: str) -> dict[str, dict] | None:
    """Trial id -> config of every trial in the newest Tune experiment state in `tune_dir` (None: there is none).

    Reads the JSON Tune writes (`experiment_state-<session>.json`, `trial_data`): the one place that says
    which trials a restore brings back. Tune has no public reader for it."""
    import glob
    import json
    import os

    files = sorted(glob.glob(os.path.join(tune_dir, "experiment_state-*.json")))
    if not files:
        return None
    with open(files[-1]) as f:
        state = json.load(f)
    out = {}
    for entry in state.get("trial_data", []):
        data = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        config = data.get("config")
        if isinstance(config, dict) and data.get("trial_id"):
            out[str(data["trial_id"])] = config
    return out



class FixedGroupSearcher(Searcher):
    """A fixed list of groups, each emitted once, in order; then `Searcher.FINISHED`. No Optuna, no TPE.

    The confirmation stage (`sweep.confirm`) runs a sweep's finalists and baselines again at a longer horizon
    and on more seeds: every group is known up front, and nothing is learnt from the results. `groups` holds
    one dict per group: `schedule` (a schedule dict), `baseline` (preset label or None) and any extra keys
    (e.g. `source_group`, the finalist's group id in the searched sweep), all copied into its trial config.

    Its state (the groups not emitted yet) is saved with Tune's experiment state, so a restored stage neither
    repeats nor drops a group; restored unfinished groups keep their trial ids and configs (Tune's own doing).
    """

    def __init__(self, groups: list[dict[str, Any]], seeds: list[int], fixed: dict[str, Any] | None = None):
        super().__init__(metric=METRIC, mode=MODE)
        for i, group in enumerate(groups):
            if "schedule" not in group:
                raise ValueError(f"groups[{i}] has no schedule")
        self._left = [dict(g) for g in groups]
        self._seeds = [int(s) for s in seeds]
        self._fixed = dict(fixed or {})
        self._emitted: dict[str, dict[str, Any]] = {}  # Tune trial id -> the group it runs

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id in self._emitted:
            group = self._emitted[trial_id]
        elif self._left:
            group = self._emitted[trial_id] = self._left.pop(0)
        else:
            return Searcher.FINISHED
        return {**self._fixed, **group, "baseline": group.get("baseline"), "seeds": list(self._seeds)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn: every group runs to its horizon

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump({"left": self._left, "emitted": self._emitted, "seeds": self._seeds, "fixed": self._fixed}, f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self._left, self._emitted = state["left"], state["emitted"]
        self._seeds, self._fixed = state["seeds"], state["fixed"]

    @property
    def groups_left(self) -> int:
        """Groups not handed to Tune yet."""
        return len(self._left)
