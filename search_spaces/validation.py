"""The one set of value checks of the whole code base: each turns a bad value into a `ConfigError` naming
the dotted field, with one wording per kind of error.

It lives in the lowest package so that every layer uses it: schedules validate in their constructors
(a bad shape never exists long enough to be half-used by a trainer), the trainer's config sections, the
sweep config, the statistics' arguments and the CLI's flags. Bounds on counts that no real run comes near
(`MAX_STEPS`, `MAX_SEED`) turn typos such as `1e30` steps into an error with the bound in the message.

Wordings: `expected <kind>, got <value>` for a wrong type, `must be finite`, `must be >= / > / <= / < <bound>,
got <value>`, `expected one of: a, b; got <value>`, `unknown key (allowed: ...)`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Collection

from search_spaces.errors import ConfigError

# Upper bounds that no real run comes near; values past them are typos (1e30 steps, 2**70 as a seed).
MAX_SEED = 2**32 - 1  # numpy's seed range (torch takes more)
MAX_STEPS = 10**9


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (int, float)) else repr(value)


def check_number(value: Any, field: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, from_string: bool = False) -> float:
    """`value` as a finite float within [lo, hi] (ends excluded where `*_open`).

    `from_string`: a numeric string counts (YAML 1.1, which PyYAML reads, takes `1e-3` without a dot for a
    string; a config file means the number)."""
    if from_string and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    # bool is an int subclass, but `floor: true` in a YAML file is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, f"expected a number, got {_shown(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(field, f"must be finite, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ConfigError(field, f"must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ConfigError(field, f"must be {'<' if hi_open else '<='} {hi:g}, got {value:g}")
    return value


def check_int(value: Any, field: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum]; floats such as 2.0 are refused (steps and seeds are
    counts), numpy integers accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(field, f"expected an integer, got {_shown(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(field, f"must be <= {maximum}, got {value}")
    return int(value)


def check_bool(value: Any, field: str) -> bool:
    """A real true/false, not a truthy string."""
    if not isinstance(value, bool):
        raise ConfigError(field, f"expected true or false, got {_shown(value)}")
    return value


def check_choice(value: Any, field: str, options: Collection[str]) -> str:
    """One of `options` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise ConfigError(field, f"expected one of: {', '.join(options)}; got {_shown(value)}")
    return value


def check_opt_str(value: Any, field: str) -> str | None:
    """A non-empty string, or None."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(field, f"expected a non-empty string or null, got {_shown(value)}")
    return value


def check_mapping(value: Any, field: str) -> dict:
    """A dict with string keys."""
    if not isinstance(value, dict):
        raise ConfigError(field, f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(field, f"keys must be strings, got {key!r}")
    return value


def check_keys(d: Any, allowed: Collection[str], path: str = "") -> dict:
    """A mapping whose keys are all in `allowed`: a typo such as ``hold_frc`` must not silently fall back to a
    default. The unknown key is named in full (`path.key`)."""
    if not isinstance(d, dict):
        raise ConfigError(path or "config", f"expected a mapping, got {type(d).__name__}")
    for key in d:
        if key not in allowed:
            # An empty or odd key is shown quoted, so the message still names it ('' rather than nothing).
            name = key if isinstance(key, str) and key.strip() and key.isprintable() else repr(key)
            raise ConfigError(f"{path}.{name}" if path else name, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return d


def check_section(d: Any, allowed: Collection[str], path: str) -> dict:
    """An optional config section: absent (None) is an empty one, else as `check_keys`."""
    return {} if d is None else check_keys(d, allowed, path)


def check_steps(value: Any, field: str) -> tuple[int, ...]:
    """A list of optimizer steps >= 1, returned sorted without repeats (a tuple: config sections are frozen).

    Repeats are dropped rather than refused: rung milestones computed with a fractional reduction factor
    can round to the same step, and probing a step once is what such a list means.
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(field, f"expected a list of steps, got {_shown(value)}")
    return tuple(sorted({check_int(s, f"{field}[{i}]", minimum=1) for i, s in enumerate(value)}))


def check_total_steps(value: Any) -> int:
    """The horizon T of a schedule: an int >= 1."""
    return check_int(value, "total_steps", minimum=1)


def check_step(value: Any, total: int) -> int:
    """A step index in 0..T-1."""
    return check_int(value, "step", minimum=0, maximum=total - 1)
