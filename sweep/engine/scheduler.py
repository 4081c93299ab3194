"""`PersistentASHA`: Ray's ASHA over group results, with its rung state kept in the sweep storage.

Stock ASHA keeps its rungs in memory only; `Tuner.restore` brings back the scheduler as it was pickled when
the sweep started, with empty rungs (ray #30838), so a resumed sweep would compare new groups against
nothing. This subclass writes the rungs to `<sweep>/asha_state.json` whenever they change and reads them
back the first time it is used after a restore. Trial ids survive a restore, so the records stay valid.

It decides on group results: `time_attr="step"` (our own step count, monotonic across restores, unlike
`training_iteration`), `metric="rung_loss"` (the group's rung metric, `sweep.engine.rung_metrics`: the mean val loss,
the mean cooldown-probe loss or the mean predicted final loss over seeds), so a group continues or stops as
one. A NaN `rung_loss` (the metric could not be computed) lets the group pass that rung and stays out of the
rung's cutoff (Ray takes the percentile with `np.nanpercentile`); the JSON state keeps it as `NaN`.

Its decisions persist too: the ids of the groups it stopped are saved with the rungs, at the moment it
decides, before Tune stops the trial and tells the searcher (which tells Optuna PRUNED). A driver that dies
or is stopped (Ctrl-C) after that decision but before Tune's next experiment checkpoint leaves a trial that
Tune restores as still running; its first result after the restore is answered STOP again, so the group
ends pruned, as Optuna already holds it, instead of running on to a finish Optuna never hears of.

Baselines are never stopped. Every verdict of the report compares a shape with a baseline, so a pruned
baseline would leave the whole report with nothing to compare against. A baseline's results still enter
every rung it reaches (ASHA records them before deciding), so they keep counting for the cut-offs of the
searched groups; only a STOP for the baseline itself is turned into CONTINUE.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler

from sweep.core import storage

logger = logging.getLogger(__name__)


def is_baseline(trial: Any) -> bool:
    """A group trial that runs a baseline preset (its config names it under `baseline`)."""
    return bool((getattr(trial, "config", None) or {}).get("baseline"))


class PersistentASHA(AsyncHyperBandScheduler):
    """ASHA (one bracket) whose rungs persist in `state_path` (a local path or a URI)."""

    def __init__(self, state_path: str, **kwargs: Any):
        super().__init__(brackets=1, **kwargs)
        self.step_attr = kwargs.get("time_attr", "training_iteration")
        self._state_path = state_path
        self._loaded = False
        self._stopped: set[str] = set()  # trial ids ASHA stopped: a restored one is stopped again

    # ---- ASHA's state ----------------------------------------------------------------------------------------
    # ASHA has a public save/restore, but it pickles the scheduler's whole __dict__ (tying the file to Ray's
    # internals) and Tune never calls it on restore (ray #30838). The rungs are saved here as JSON instead,
    # which means reading and amending the bracket's rung records and ASHA's counters, kept in private fields
    # with no public accessors: the four members below are the only places that touch them.
    def _rung_records(self) -> list[tuple[float, dict[str, float]]]:
        """The one bracket's (milestone, records) pairs, the records live (amending them amends ASHA)."""
        return self._brackets[0]._rungs

    def _track(self, trial: Any) -> None:
        """Register a trial with the bracket (a trial restored mid-sweep may report before Tune re-adds it)."""
        self._trial_info.setdefault(trial.trial_id, self._brackets[0])

    def _untrack(self, trial: Any) -> None:
        self._trial_info.pop(trial.trial_id, None)

    @property
    def _stops(self) -> int:
        """ASHA's count of the trials it stopped (shown in its debug string; saved with the rungs)."""
        return self._num_stopped

    @_stops.setter
    def _stops(self, value: int) -> None:
        self._num_stopped = int(value)

    def rungs(self) -> list[tuple[float, dict[str, float]]]:
        """(milestone, {trial id: signed metric}) per rung, highest milestone first (as Ray keeps them)."""
        return [(m, dict(rec)) for m, rec in self._rung_records()]

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        text = storage.read_text(self._state_path)
        if not text:
            return
        state = json.loads(text)
        saved = {float(m): rec for m, rec in state["rungs"]}
        for milestone, recorded in self._rung_records():
            recorded.update(saved.get(float(milestone), {}))
        self._stops = int(state.get("num_stopped", 0))
        self._stopped = set(state.get("stopped", []))
        logger.info("ASHA rung state restored from %s", self._state_path)

    def _save(self) -> None:
        state = {
            "rungs": [[m, rec] for m, rec in self.rungs()],
            "num_stopped": self._stops,
            "stopped": sorted(getattr(self, "_stopped", set())),
        }
        storage.write_text(self._state_path, json.dumps(state))

    # -----------------------------------------------------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._ensure_loaded()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._ensure_loaded()
        self._track(trial)
        if not hasattr(self, "_stopped"):
            self._stopped = set()  # a scheduler pickled before this field
        if trial.trial_id in self._stopped:
            logger.warning("group %s was stopped by ASHA before the restore: stopped again", trial.trial_id)
            return self.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and is_baseline(trial):
            # Recorded in the rung already (ASHA records before it decides); the baseline itself runs on.
            self._stops -= 1
            action = self.CONTINUE
            logger.info("baseline %s kept running past the rung at step %s where ASHA would stop it",
                        trial.config.get("baseline"), result.get(self.step_attr))
        if action == self.STOP:
            self._stopped.add(trial.trial_id)
        self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._ensure_loaded()
        self._track(trial)
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._untrack(trial)
