"""The parametric schedule shape: warmup, hold at peak, decay to a floor.

YAML form::

    schedule: {warmup_frac: 0.02, warmup_curve: linear, hold_frac: 0.7, shape: cosine, floor: 0.1}
    schedule: {warmup_frac: 0.0, hold_frac: 0.8, shape: polynomial, tail_exponent: 2.0, floor: 0.0}

All positions are fractions of the horizon T, so one shape serves any run length:

* ``[0, warmup_frac]``: from 0 up to the peak 1.0 along `warmup_curve` (linear, sqrt, cosine, exponential);
* ``[warmup_frac, hold_frac]``: constant at 1.0 (`hold_frac` is where the hold *ends*, so
  ``hold_frac >= warmup_frac``; ``hold_frac == warmup_frac`` means no hold);
* ``[hold_frac, 1]``: from 1.0 down to `floor` (in [0, 1)) along `shape` (cosine, linear, sqrt = "1-sqrt",
  polynomial with `tail_exponent` p: f + (1-f)(1-t)^p, exponential); `tail_exponent` is for polynomial only.

A shape compiles to `Segments` (zero-length phases dropped) and evaluates through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from search_spaces import validation
from search_spaces.base import VectorSchedule
from search_spaces.curves import CURVES
from search_spaces.errors import ConfigError
from search_spaces.segments import Segment, Segments
from search_spaces.words import curve_word, level, percent

WARMUP_CURVES: tuple[str, ...] = ("linear", "sqrt", "cosine", "exponential")
"""Curves a warmup may take (polynomial warmups are not a thing people run)."""

DECAY_SHAPES: tuple[str, ...] = CURVES
"""Decay shapes: every curve, ``sqrt`` being the "1-sqrt" cooldown."""

SHAPE_FIELDS: tuple[str, ...] = ("warmup_frac", "warmup_curve", "hold_frac", "shape", "tail_exponent", "floor")


@dataclass(frozen=True)
class Shape(VectorSchedule):
    """Warmup -> hold -> decay to a floor, every position a fraction of the horizon."""

    warmup_frac: float = 0.0
    warmup_curve: str = "linear"
    hold_frac: float = 0.0
    shape: str = "cosine"
    floor: float = 0.0
    tail_exponent: float | None = None

    def __post_init__(self) -> None:
        warmup = validation.check_number(self.warmup_frac, "warmup_frac", lo=0.0, hi=1.0)
        validation.check_choice(self.warmup_curve, "warmup_curve", WARMUP_CURVES)
        hold = validation.check_number(self.hold_frac, "hold_frac", lo=0.0, hi=1.0)
        if hold < warmup:
            raise ConfigError("hold_frac", f"is where the hold ends, so it must be >= warmup_frac "
                                           f"({warmup:g}), got {hold:g}")
        validation.check_choice(self.shape, "shape", DECAY_SHAPES)
        floor = validation.check_number(self.floor, "floor", lo=0.0, hi=1.0, hi_open=True)
        if self.shape == "polynomial":
            if self.tail_exponent is None:
                raise ConfigError("tail_exponent", "required when shape is polynomial")
            exponent = validation.check_number(self.tail_exponent, "tail_exponent", lo=0.0, lo_open=True)
            object.__setattr__(self, "tail_exponent", exponent)
        elif self.tail_exponent is not None:
            raise ConfigError("tail_exponent", f"only used when shape is polynomial, not {self.shape!r}")
        object.__setattr__(self, "warmup_frac", warmup)
        object.__setattr__(self, "hold_frac", hold)
        object.__setattr__(self, "floor", floor)

    @cached_property
    def compiled(self) -> Segments:
        """The equivalent `Segments` (computed once; frozen dataclasses may still cache via __dict__)."""
        return self.to_segments()

    def to_segments(self) -> Segments:
        """The equivalent piecewise form, zero-length phases left out."""
        phases: list[Segment] = []
        if self.warmup_frac > 0:
            phases.append(Segment(self.warmup_frac, 1.0, self.warmup_curve))
        if self.hold_frac > self.warmup_frac:
            phases.append(Segment(self.hold_frac - self.warmup_frac, 1.0, "linear"))
        if self.hold_frac < 1.0:
            phases.append(Segment(1.0 - self.hold_frac, self.floor, self.shape, self.tail_exponent))
        return Segments(tuple(phases), start=0.0 if self.warmup_frac > 0 else 1.0)

    def _evaluate(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        return self.compiled._evaluate(steps, total_steps)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"warmup_frac": self.warmup_frac, "warmup_curve": self.warmup_curve,
                             "hold_frac": self.hold_frac, "shape": self.shape, "floor": self.floor}
        if self.tail_exponent is not None:
            d["tail_exponent"] = self.tail_exponent
        return d

    def flat_params(self) -> dict[str, float | int | str]:
        return {"kind": "shape", **self.to_dict()}

    def describe(self) -> str:
        # Phase lengths, not boundaries: "hold 70%" is the hold's length whatever the warmup before it.
        parts = []
        if self.warmup_frac > 0:
            parts.append(f"warmup {percent(self.warmup_frac)} {curve_word(self.warmup_curve, rising=True)}")
        if self.hold_frac > self.warmup_frac:
            parts.append(f"hold {percent(self.hold_frac - self.warmup_frac)}")
        if self.hold_frac < 1.0:
            parts.append(f"{curve_word(self.shape, self.tail_exponent)} -> {level(self.floor)}")
        else:
            parts.append("no decay")
        return "wsd: " + ", ".join(parts)

    @classmethod
    def from_dict(cls, d: Any) -> "Shape":
        """Parse the YAML form; missing fields take the dataclass defaults, unknown ones are refused."""
        d = validation.check_mapping(d, "")
        validation.check_keys(d, SHAPE_FIELDS)
        return cls(**d)
