"""The `Schedule` protocol and the step convention every schedule follows.

Step semantics (the one convention shared by every layer):

* a run of T optimizer steps has steps ``0 .. T-1``; the LR used for the optimizer update at step ``s`` is
  ``peak_lr * multiplier(s, T)``, and the peak multiplier is 1.0;
* shapes defined in fractions of the horizon place step ``s`` at position ``x = s / (T - 1)`` in [0, 1]
  (``x = 0`` when T == 1), so both ends of a shape are hit exactly: step 0 takes the shape's start value
  and step T-1 its final value (the floor).  A warmup from 0 therefore spends step 0 at LR 0, as the
  common Hugging Face convention does;
* presets that copy a published formula use that formula's own step convention instead (documented
  per preset), because reproducing it step for step is their point.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np

from search_spaces import validation


@runtime_checkable
class Schedule(Protocol):
    """An LR multiplier as a function of (step, horizon), serialisable as data."""

    def multiplier(self, step: int, total_steps: int) -> float:
        """The LR multiplier at `step` (0..T-1) of a run of `total_steps` steps."""
        ...

    def multipliers(self, total_steps: int) -> np.ndarray:
        """All T multipliers as float64, index = step; equal to the scalar form."""
        ...

    def to_dict(self) -> dict:
        """The YAML/JSON form; `schedule_from_dict` turns it back into an equal schedule."""
        ...

    def flat_params(self) -> dict[str, float | int | str]:
        """Flat key -> scalar view, for MLflow params."""
        ...

    def describe(self) -> str:
        """The shape in words, one compact line (``wsd: warmup 2% lin, hold 70%, cos -> 0.1``): how
        labels, tables and legends name it."""
        ...


def positions(steps: np.ndarray, total_steps: int) -> np.ndarray:
    """Steps -> positions ``x = s / (T - 1)`` in [0, 1] (all 0 when T == 1)."""
    steps = np.asarray(steps, dtype=np.float64)
    if total_steps == 1:
        return np.zeros_like(steps)
    return steps / float(total_steps - 1)


class VectorSchedule(ABC):
    """Base for schedules written once, vectorised: the scalar form evaluates the same code on one step.

    Sharing one code path is what makes ``multiplier(s, T) == multipliers(T)[s]`` hold exactly rather
    than up to rounding differences between `math` and numpy.
    """

    @abstractmethod
    def _evaluate(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        """Multipliers (float64) for an int64 array of valid steps."""

    def multiplier(self, step: int, total_steps: int) -> float:
        total = validation.check_total_steps(total_steps)
        s = validation.check_step(step, total)
        return float(self._evaluate(np.array([s], dtype=np.int64), total)[0])

    def multipliers(self, total_steps: int) -> np.ndarray:
        total = validation.check_total_steps(total_steps)
        out = self._evaluate(np.arange(total, dtype=np.int64), total)
        return np.asarray(out, dtype=np.float64)
