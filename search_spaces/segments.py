"""Multi-phase schedules: a start level and a list of segments covering the horizon.

YAML form::

    schedule:
      start: 0.0                      # level at x = 0 (default 0.0)
      segments:
        - {duration: 0.02, end: 1.0, curve: linear}      # warmup
        - {duration: 0.68, end: 1.0, curve: linear}      # hold at peak
        - {duration: 0.20, end: 0.3825, curve: cosine}   # first decay stage
        - {duration: 0.10, end: 0.05, curve: polynomial, exponent: 2.0}

Durations are fractions of the horizon, each > 0, summing to 1.  Levels are LR multipliers in [0, 1].
A segment goes from the previous segment's end level (or `start`) to its `end` along `curve` (see
`search_spaces.curves`).  Step ``s`` of ``T`` sits at ``x = s / (T - 1)``; a step exactly on a boundary
belongs to the later segment, which starts where the earlier one ended, so the curve is continuous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces import validation
from search_spaces.base import VectorSchedule, positions
from search_spaces.curves import CURVES, curve_fraction
from search_spaces.errors import ConfigError
from search_spaces.words import curve_word, level, percent

# Durations are written by people (0.7 + 0.2 + 0.1); allow their float sum a little slack.
_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Segment:
    """One phase: over `duration` (fraction of T), move to level `end` along `curve`."""

    duration: float
    end: float
    curve: str = "linear"
    exponent: float | None = None  # the polynomial's p; only for curve == "polynomial"

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration", validation.check_number(self.duration, "duration", lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "end", validation.check_number(self.end, "end", lo=0.0, hi=1.0))
        validation.check_choice(self.curve, "curve", CURVES)
        if self.curve == "polynomial":
            if self.exponent is None:
                raise ConfigError("exponent", "required when curve is polynomial")
            object.__setattr__(self, "exponent", validation.check_number(self.exponent, "exponent", lo=0.0, lo_open=True))
        elif self.exponent is not None:
            raise ConfigError("exponent", f"only used by the polynomial curve, not by {self.curve!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"duration": self.duration, "end": self.end, "curve": self.curve}
        if self.exponent is not None:
            d["exponent"] = self.exponent
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Segment":
        d = validation.check_mapping(d, "")
        validation.check_keys(d, ("duration", "end", "curve", "exponent"))
        for key in ("duration", "end"):
            if key not in d:
                raise ConfigError(key, "required")
        return cls(**d)


@dataclass(frozen=True)
class Segments(VectorSchedule):
    """A piecewise schedule: `start` level, then `segments` in order, durations summing to 1."""

    segments: tuple[Segment, ...]
    start: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", validation.check_number(self.start, "start", lo=0.0, hi=1.0))
        if isinstance(self.segments, (str, bytes)) or not isinstance(self.segments, (list, tuple)):
            raise ConfigError("segments", f"must be a list of segments, got {type(self.segments).__name__}")
        if not self.segments:
            raise ConfigError("segments", "must hold at least one segment")
        for i, seg in enumerate(self.segments):
            if not isinstance(seg, Segment):
                raise ConfigError(f"segments[{i}]", f"must be a Segment, got {type(seg).__name__}")
        object.__setattr__(self, "segments", tuple(self.segments))
        total = float(np.sum([seg.duration for seg in self.segments], dtype=np.float64))
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ConfigError("segments", f"durations must sum to 1, got {total:.12g}")

    # -- evaluation ---------------------------------------------------------------------------------

    def boundaries(self) -> np.ndarray:
        """Segment edges in [0, 1]: ``len(segments) + 1`` values, first 0.0 and last exactly 1.0."""
        edges = np.concatenate([[0.0], np.cumsum([seg.duration for seg in self.segments], dtype=np.float64)])
        edges[-1] = 1.0  # absorb the allowed rounding slack so the final level is hit exactly
        return edges

    def levels(self) -> np.ndarray:
        """Level at each boundary: `start`, then every segment's `end`."""
        return np.array([self.start] + [seg.end for seg in self.segments], dtype=np.float64)

    def evaluate_at(self, x: np.ndarray) -> np.ndarray:
        """The schedule at positions `x` in [0, 1] (float64 array)."""
        x = np.asarray(x, dtype=np.float64)
        edges, levels = self.boundaries(), self.levels()
        # Index of the segment holding x; a point on an inner edge goes to the later segment.
        index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(self.segments) - 1)
        out = np.empty_like(x)
        for i, seg in enumerate(self.segments):
            mask = index == i
            if not mask.any():
                continue
            a, b = levels[i], levels[i + 1]
            width = edges[i + 1] - edges[i]
            # A segment far shorter than one ulp of 1.0 (e.g. hold_frac = 1 - 1e-16) has no width left after the
            # cumulative sum: only x on its end lands in it, so it is at its end level (0 / 0 would be NaN).
            u = (x[mask] - edges[i]) / width if width > 0.0 else np.ones(int(mask.sum()))
            g = curve_fraction(seg.curve, u, seg.exponent)
            value = a + (b - a) * g
            # Rounding in a + (b - a) * g can step one ulp outside [a, b]; clamping keeps the schedule
            # monotone within the segment, and the exact end values keep the endpoints exact.
            value = np.clip(value, min(a, b), max(a, b))
            value = np.where(u >= 1.0, b, np.where(u <= 0.0, a, value))
            out[mask] = value
        return out

    def _evaluate(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        return self.evaluate_at(positions(steps, total_steps))

    # -- data ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "segments": [seg.to_dict() for seg in self.segments]}

    def flat_params(self) -> dict[str, float | int | str]:
        params: dict[str, float | int | str] = {"kind": "segments", "start": self.start,
                                                 "n_segments": len(self.segments)}
        for i, seg in enumerate(self.segments):
            for key, value in seg.to_dict().items():
                params[f"seg{i}.{key}"] = value
        return params

    def describe(self) -> str:
        # Each phase as "<curve> <length> -> <end level>", a flat one as "hold <length>".
        parts, current = [f"from {level(self.start)}"], self.start
        for seg in self.segments:
            if seg.end == current:
                parts.append(f"hold {percent(seg.duration)}")
            else:
                rising = seg.end > current
                parts.append(f"{curve_word(seg.curve, seg.exponent, rising)} {percent(seg.duration)} -> {level(seg.end)}")
            current = seg.end
        return "seg: " + ", ".join(parts)

    @classmethod
    def from_dict(cls, d: Any) -> "Segments":
        """Parse ``{start?, segments: [...]}``; errors name e.g. ``segments[2].duration``."""
        d = validation.check_mapping(d, "")
        validation.check_keys(d, ("start", "segments"))
        raw = d.get("segments")
        if not isinstance(raw, list):
            raise ConfigError("segments", f"must be a list of segments, got {type(raw).__name__}")
        parsed = []
        for i, item in enumerate(raw):
            try:
                parsed.append(Segment.from_dict(item))
            except ConfigError as err:
                raise err.prefixed(f"segments[{i}]") from None
        return cls(segments=tuple(parsed), start=d.get("start", 0.0))
