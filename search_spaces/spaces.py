"""Search spaces over schedule shapes, for Optuna define-by-run and for plain random sampling.

A space's `suggest(trial)` calls only ``trial.suggest_float`` and ``trial.suggest_categorical`` (always with
the same name -> distribution, so TPE can model each parameter) and returns a valid schedule for every
suggestion: constraints between parameters are built into the parameterisation instead of rejected
afterwards.  `sample(rng)` draws from the same definition through a small numpy-backed trial.

Spaces and their parameter names (stable: they become Optuna and MLflow parameter names):

``wsd`` -- warmup-stable-decay shapes (linear warmup):
    ``warmup_frac`` in [0, 0.1]; ``cooldown_frac`` in [0.05, 0.5] (``hold_frac = 1 - cooldown_frac``, so
    ``hold_frac >= warmup_frac`` always); ``shape`` in {linear, cosine, sqrt, exponential, polynomial};
    ``tail_exponent`` in [0.5, 4] (log), suggested only when shape is polynomial; ``floor`` in [0, 0.2].

``full`` -- the whole `Shape` family:
    ``warmup_frac`` in [0, 0.2]; ``warmup_curve`` in {linear, sqrt, cosine, exponential}; ``hold_share`` in
    [0, 0.9], the fraction of the post-warmup time held at peak (``hold_frac = warmup_frac + hold_share *
    (1 - warmup_frac)``); ``shape``, ``tail_exponent`` as in ``wsd``; ``floor`` in [0, 0.3].

``two_stage`` -- warmup, hold, then a two-stage decay as `Segments` (the family of seed 003's first schedule):
    ``warmup_frac`` in [0, 0.1]; ``hold_share`` in [0, 0.8]; ``split`` in [0.2, 0.8], the first stage's
    share of the decay time; ``mid_level`` in [0.1, 0.9], where the first stage ends, as a fraction of the
    way from ``floor`` to 1; ``stage1_curve``, ``stage2_curve`` in {linear, cosine, sqrt, exponential};
    ``floor`` in [0, 0.2].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from search_spaces.base import Schedule
from search_spaces.errors import ConfigError
from search_spaces.segments import Segment, Segments
from search_spaces.shapes import DECAY_SHAPES, WARMUP_CURVES, Shape


class TrialLike(Protocol):
    """The part of `optuna.trial.Trial` a space uses."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RngTrial:
    """A `TrialLike` that draws uniformly (log-uniformly where asked) from a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        if log:
            value = float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
        else:
            value = float(self.rng.uniform(low, high))
        # exp(log(x)) may land an ulp outside the range; clamp like Optuna's own samplers do.
        self.params[name] = value = min(max(value, low), high)
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = choices[int(self.rng.integers(len(choices)))]
        self.params[name] = value
        return value


@dataclass(frozen=True)
class SearchSpace:
    """A named, documented family of schedules with a define-by-run `suggest`."""

    name: str
    description: str
    params: dict[str, str]  # parameter name -> meaning and range
    build: Callable[[TrialLike], Schedule]

    def suggest(self, trial: TrialLike) -> Schedule:
        """A schedule from `trial`'s suggestions (Optuna define-by-run)."""
        return self.build(trial)

    def sample(self, rng: np.random.Generator) -> Schedule:
        """A schedule drawn at random from the same definition."""
        return self.build(RngTrial(rng))


def _decay(trial: TrialLike) -> tuple[str, float | None]:
    shape = trial.suggest_categorical("shape", list(DECAY_SHAPES))
    exponent = trial.suggest_float("tail_exponent", 0.5, 4.0, log=True) if shape == "polynomial" else None
    return shape, exponent


def _build_wsd(trial: TrialLike) -> Schedule:
    warmup = trial.suggest_float("warmup_frac", 0.0, 0.1)
    cooldown = trial.suggest_float("cooldown_frac", 0.05, 0.5)
    shape, exponent = _decay(trial)
    floor = trial.suggest_float("floor", 0.0, 0.2)
    return Shape(warmup_frac=warmup, warmup_curve="linear", hold_frac=1.0 - cooldown, shape=shape,
                 floor=floor, tail_exponent=exponent)


def _build_full(trial: TrialLike) -> Schedule:
    warmup = trial.suggest_float("warmup_frac", 0.0, 0.2)
    warmup_curve = trial.suggest_categorical("warmup_curve", list(WARMUP_CURVES))
    hold_share = trial.suggest_float("hold_share", 0.0, 0.9)
    shape, exponent = _decay(trial)
    floor = trial.suggest_float("floor", 0.0, 0.3)
    # min() guards the float sum against landing an ulp above 1.
    hold = min(warmup + hold_share * (1.0 - warmup), 1.0)
    return Shape(warmup_frac=warmup, warmup_curve=warmup_curve, hold_frac=hold, shape=shape, floor=floor,
                 tail_exponent=exponent)


_STAGE_CURVES = ["linear", "cosine", "sqrt", "exponential"]


def _build_two_stage(trial: TrialLike) -> Schedule:
    warmup = trial.suggest_float("warmup_frac", 0.0, 0.1)
    hold_share = trial.suggest_float("hold_share", 0.0, 0.8)
    split = trial.suggest_float("split", 0.2, 0.8)
    mid_level = trial.suggest_float("mid_level", 0.1, 0.9)
    curve1 = trial.suggest_categorical("stage1_curve", _STAGE_CURVES)
    curve2 = trial.suggest_categorical("stage2_curve", _STAGE_CURVES)
    floor = trial.suggest_float("floor", 0.0, 0.2)
    hold = hold_share * (1.0 - warmup)
    decay = 1.0 - warmup - hold  # >= 0.2 because warmup <= 0.1 and hold_share <= 0.8
    mid = floor + mid_level * (1.0 - floor)
    segments = [Segment(hold, 1.0)] if hold > 0 else []
    segments += [Segment(split * decay, mid, curve1), Segment((1.0 - split) * decay, floor, curve2)]
    if warmup > 0:
        segments.insert(0, Segment(warmup, 1.0))
    return Segments(tuple(segments), start=0.0 if warmup > 0 else 1.0)


_SPACES: tuple[SearchSpace, ...] = (
    SearchSpace(
        "wsd", "warmup-stable-decay: linear warmup, hold at peak, any decay shape to a floor",
        {"warmup_frac": "[0, 0.1] linear warmup length",
         "cooldown_frac": "[0.05, 0.5] decay length (hold_frac = 1 - cooldown_frac)",
         "shape": "decay curve: " + ", ".join(DECAY_SHAPES),
         "tail_exponent": "[0.5, 4] log; polynomial decay only",
         "floor": "[0, 0.2] final LR / peak"},
        _build_wsd),
    SearchSpace(
        "full", "the whole Shape family: warmup curve and length, hold, decay shape, floor",
        {"warmup_frac": "[0, 0.2] warmup length",
         "warmup_curve": "warmup curve: " + ", ".join(WARMUP_CURVES),
         "hold_share": "[0, 0.9] share of the post-warmup time held at peak",
         "shape": "decay curve: " + ", ".join(DECAY_SHAPES),
         "tail_exponent": "[0.5, 4] log; polynomial decay only",
         "floor": "[0, 0.3] final LR / peak"},
        _build_full),
    SearchSpace(
        "two_stage", "warmup, hold, then a two-stage decay through a middle level (seed 003 #1's family)",
        {"warmup_frac": "[0, 0.1] linear warmup length",
         "hold_share": "[0, 0.8] share of the post-warmup time held at peak",
         "split": "[0.2, 0.8] first stage's share of the decay time",
         "mid_level": "[0.1, 0.9] first stage's end, fraction of the way from floor to peak",
         "stage1_curve": "first stage curve: " + ", ".join(_STAGE_CURVES),
         "stage2_curve": "second stage curve: " + ", ".join(_STAGE_CURVES),
         "floor": "[0, 0.2] final LR / peak"},
        _build_two_stage),
)
_BY_NAME = {space.name: space for space in _SPACES}


def list_search_spaces() -> list[str]:
    """Every search space name, in a stable order."""
    return [space.name for space in _SPACES]


def get_search_space(name: str) -> SearchSpace:
    """The search space `name`; an unknown name raises `ConfigError` listing the known ones."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ConfigError("search_space", f"unknown search space {name!r}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]
