"""What ASHA compares at a rung: `rung_loss`, computed per group result by the chosen rung metric.

ASHA's metric is `rung_loss` (mode min); Optuna keeps getting the mean final `val_loss` (`sweep.engine.searcher`).
At a rung, a shape that has already annealed looks better than one still at its peak, although it may end
worse (short-horizon bias), so raw val loss misjudges late-decay shapes. The metrics (docs/design.md,
"Rung metrics"):

- ``raw``: the group's mean val loss (stock ASHA);
- ``cooldown``: the mean over seeds of ``val_loss_cooldown``, the val loss of a fork annealed to the floor
  over ``cooldown_frac`` x the steps so far, which the backend reports at the first eval at or after each
  probe step (GPT trainer: `trainable.cooldown_probe`; simulator: `trainable.simulator`);
- ``predicted``: per seed, a Multi-Power-Law fit (`trainable.loss_law.fit`) to the val-loss curve so far,
  extrapolated to the final step under the seed's own full schedule; the mean over seeds.

Only results *at a rung* (the first group result at or after a probe step; `probe_steps` are ASHA's
milestones below the horizon, see `SchedulerSection.milestones`) carry the chosen metric; every other result
carries the raw mean, and the final result its final mean val loss, which every metric estimates. A rung
result whose metric cannot be computed (a probe missing, too few points to fit) carries NaN: Ray's ASHA
then lets the group pass that rung and leaves it out of the rung's cutoff, rather than judging it by a
different yardstick than the others.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np

from search_spaces import schedule_from_dict
from search_spaces.errors import ConfigError
from sweep.config.backends import BACKENDS
from sweep.core.trial_spec import TrialSpec
from trainable.loss_law import default_prior, predict_final_loss

logger = logging.getLogger(__name__)

RUNG_KEY = "rung_loss"
RAW, COOLDOWN, PREDICTED = "raw", "cooldown", "predicted"
COOLDOWN_KEY = "val_loss_cooldown"

# The fit's cost grows with the points it sees (x the LR changes before each); a rung needs the curve's
# shape, not every eval, so longer prefixes are thinned to this many points (the latest always kept).
MAX_FIT_POINTS = 32
# Pull of the law's shape parameters (alpha, C, beta, gamma) towards the prior: a partial curve that has not
# decayed yet says little about them (see trainable.loss_law.fit, `prior_strength`).
PRIOR_STRENGTH = 0.01
# Fewer points than this and a seven-parameter fit is noise: the rung gets NaN instead.
MIN_FIT_POINTS = 4


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def run_lrs(spec: TrialSpec) -> np.ndarray | None:
    """A group's absolute LR sequence (one entry per step) from its trial spec, or None when unknown.

    The GPT trainer's peak LR is `trainer.optimizer.lr`, the simulator's `simulator.peak_lr`; an external
    script's is not known to the sweep, so its multipliers stand in (the fit's prior is moved to the peak LR
    it sees, so the scale only matters through the law's LR-dependence of the loss drop).
    """
    schedule = schedule_from_dict(dict(spec.schedule))
    total, peak = BACKENDS[spec.backend].horizon_and_peak_lr(spec.section, spec.schedule, spec.resources.workers)
    return peak * np.asarray(schedule.multipliers(total), dtype=np.float64)


def predict_seed_final(steps: Sequence[int], losses: Sequence[float], lrs: np.ndarray) -> float:
    """One seed's final loss predicted from its (step, val loss) points so far and its whole LR sequence.

    The prior is the paper's 100M fit moved to this run's peak LR (`trainable.loss_law`); at most
    `MAX_FIT_POINTS` points, evenly thinned, the last one always kept; points at step 0 are not used. NaN
    when there are fewer than `MIN_FIT_POINTS` usable points or the fit fails.
    """
    # Step 0 (an eval before any update, as nanoGPT does) is the untrained loss: no LR has acted on it, and the
    # law counts steps from 1. It is left out of the fit, not fatal.
    pts = [(int(s), float(v)) for s, v in zip(steps, losses) if int(s) >= 1 and math.isfinite(float(v))]
    if len(pts) < MIN_FIT_POINTS:
        return math.nan
    if len(pts) > MAX_FIT_POINTS:
        keep = np.unique(np.round(np.linspace(0, len(pts) - 1, MAX_FIT_POINTS)).astype(int))
        pts = [pts[i] for i in keep]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    try:
        value = predict_final_loss(xs, ys, lrs, prior=default_prior(lrs), prior_strength=PRIOR_STRENGTH)
    except (ConfigError, ValueError, np.linalg.LinAlgError) as err:
        logger.warning("predicted rung metric: fit failed (%s)", err)
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


class RungScorer:
    """Computes `rung_loss` for a group's results (used by `GroupAggregator`).

    `metric`: raw, cooldown or predicted; `probe_steps`: ASHA's milestones below the horizon (a result is at
    a rung when it is the first at or after one of them); `lrs`: the group's absolute LR sequence (needed by
    `predicted` only).
    """

    def __init__(self, metric: str = RAW, probe_steps: Sequence[int] = (), lrs: np.ndarray | None = None):
        if metric not in (RAW, COOLDOWN, PREDICTED):
            raise ValueError(f"unknown rung metric {metric!r}")
        if metric == PREDICTED and lrs is None:
            raise ValueError("the predicted rung metric needs the group's LR sequence")
        self.metric = metric
        self.probe_steps = sorted(int(s) for s in probe_steps)
        self.lrs = lrs

    @classmethod
    def from_spec(cls, spec: TrialSpec) -> "RungScorer":
        """The scorer a group trial asks for (`rung_metric`, `probe_steps`)."""
        lrs = run_lrs(spec) if spec.rung_metric == PREDICTED else None
        return cls(spec.rung_metric, spec.probe_steps, lrs)

    def at_rung(self, previous_step: int, step: int) -> bool:
        """Whether a result at `step`, following one at `previous_step`, is the first at or past a milestone."""
        return any(previous_step < p <= step for p in self.probe_steps)

    def score(self, step: int, previous_step: int, raw: float,
              history: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> float:
        """`rung_loss` of the group result at `step`. `history`: per seed, {step: that seed's report}."""
        if self.metric == RAW or not self.at_rung(previous_step, step):
            return raw
        if self.metric == COOLDOWN:
            values = [history[s].get(step, {}).get(COOLDOWN_KEY) for s in history]
            if any(v is None for v in values):
                logger.warning("cooldown rung metric: a seed reported no %s at step %d", COOLDOWN_KEY, step)
                return math.nan
            return _mean([float(v) for v in values])
        assert self.lrs is not None
        predictions = []
        for per in history.values():
            seen = sorted(s for s in per if s <= step)
            predictions.append(predict_seed_final(seen, [per[s].get("val_loss", math.nan) for s in seen], self.lrs))
        if not all(math.isfinite(p) for p in predictions):
            return math.nan
        return _mean(predictions)
