"""Small checks that turn bad values into `ConfigError`s naming the field.

Every schedule type validates in its constructor with these, so a bad shape never exists long enough to
be half-used by a trainer.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Collection

from search_spaces.errors import ConfigError


def number(value: Any, field: str, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """`value` as a finite float within [lo, hi] (ends excluded where `*_open`), else `ConfigError`."""
    # bool is an int subclass, but `floor: true` in a YAML file is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, f"must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(field, f"must be finite, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ConfigError(field, f"must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ConfigError(field, f"must be {'<' if hi_open else '<='} {hi:g}, got {value:g}")
    return value


def integer(value: Any, field: str, *, lo: int | None = None) -> int:
    """`value` as an int >= lo, else `ConfigError` (floats such as 2.0 are refused: iterations are counts)."""
    # numbers.Integral also admits numpy integers, which trainers loop over.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(field, f"must be an integer, got {type(value).__name__} {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(field, f"must be >= {lo}, got {value}")
    return int(value)


def choice(value: Any, field: str, options: Collection[str]) -> str:
    """`value` if it is one of `options`, else `ConfigError` listing them."""
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, got {type(value).__name__} {value!r}")
    if value not in options:
        raise ConfigError(field, f"unknown value {value!r}; expected one of: {', '.join(options)}")
    return value


def mapping(value: Any, field: str) -> dict:
    """`value` if it is a dict with string keys, else `ConfigError`."""
    if not isinstance(value, dict):
        raise ConfigError(field, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(field, f"keys must be strings, got {key!r}")
    return value


def no_unknown_keys(d: dict, allowed: Collection[str], prefix: str = "") -> None:
    """Refuse keys outside `allowed`: a typo such as ``hold_frc`` must not silently fall back to a default."""
    for key in d:
        if key not in allowed:
            name = key if isinstance(key, str) and key.strip() and key.isprintable() else repr(key)
            raise ConfigError(f"{prefix}{name}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def total_steps(value: Any) -> int:
    """The horizon T: an int >= 1."""
    return integer(value, "total_steps", lo=1)


def step(value: Any, total: int) -> int:
    """A step index in 0..T-1."""
    s = integer(value, "step", lo=0)
    if s >= total:
        raise ConfigError("step", f"must be < total_steps ({total}), got {s}")
    return s
