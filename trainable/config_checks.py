"""Small typed validators for config sections: each takes the dotted path so the error names the field."""

from __future__ import annotations

import math
from typing import Any

from search_spaces.errors import ConfigError


def check_keys(d: Any, allowed: set[str], path: str) -> dict:
    """`d` must be a mapping whose keys are all in `allowed`; an unknown key is named in full."""
    if not isinstance(d, dict):
        raise ConfigError(path, f"expected a mapping, got {type(d).__name__}")
    for key in d:
        if key not in allowed:
            # An empty or odd key is shown quoted, so the message still names it ('' rather than nothing).
            name = key if isinstance(key, str) and key.strip() and key.isprintable() else repr(key)
            where = f"{path}.{name}" if path else name
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return d


# Upper bounds that no real run comes near; values past them are typos (1e30 steps, 2**70 as a seed).
MAX_SEED = 2**32 - 1  # numpy's seed range (torch takes more)
MAX_STEPS = 10**9


def check_int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool), optionally >= `minimum` and <= `maximum`."""
    # bool is an int subclass in Python; `steps: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(path, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"must be <= {maximum}, got {value}")
    return value


def check_float(value: Any, path: str, minimum: float | None = None, strict_min: bool = False,
                maximum: float | None = None) -> float:
    """A finite number (numeric strings such as YAML 1.1's `1e-3` included), optionally above `minimum` and
    at most `maximum`."""
    if isinstance(value, str):
        # YAML 1.1 (PyYAML) reads `1e-3` without a dot as a string; accept what is clearly a number.
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(path, f"must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ConfigError(path, f"must be {'>' if strict_min else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"must be <= {maximum:g}, got {value:g}")
    return value


def check_bool(value: Any, path: str) -> bool:
    """A real true/false, not a truthy string."""
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    return value


def check_choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    """One of `choices`."""
    if value not in choices:
        raise ConfigError(path, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def check_steps(value: Any, path: str) -> tuple[int, ...]:
    """A list of optimizer steps >= 1, returned sorted without repeats (a tuple: config sections are frozen).

    Repeats are dropped rather than refused: rung milestones computed with a fractional reduction factor
    can round to the same step, and probing a step once is what such a list means.
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, f"expected a list of steps, got {value!r}")
    return tuple(sorted({check_int(s, f"{path}[{i}]", minimum=1) for i, s in enumerate(value)}))
