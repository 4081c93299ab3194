"""The sweep config's `search_space:` field: a named `search_spaces` space, or one written inline.

An inline space maps Shape parameters to a range `[low, high]` (two numbers), a list of choices (strings),
`{choices: [...]}` (any values), or a fixed value. It has the same define-by-run `suggest(trial)` as a
`search_spaces.SearchSpace`, so the searcher treats both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search_spaces import get_search_space, schedule_from_dict
from search_spaces.errors import ConfigError


@dataclass(frozen=True)
class InlineSpace:
    """A search space written in the config: Shape parameter -> [low, high], [choices...] or a fixed value."""

    params: dict[str, Any]
    name: str = "inline"
    description: str = "inline search space from the sweep config"

    def suggest(self, trial: Any):
        """A schedule from `trial`'s suggestions (define-by-run, like `search_spaces.SearchSpace`)."""
        values: dict[str, Any] = {}
        for key, spec in self.params.items():
            if isinstance(spec, list) and len(spec) == 2 and all(_is_num(v) for v in spec):
                values[key] = trial.suggest_float(key, float(spec[0]), float(spec[1]))
            elif isinstance(spec, list):
                values[key] = trial.suggest_categorical(key, list(spec))
            elif isinstance(spec, dict):  # {choices: [...]}: numbers as choices rather than a range
                values[key] = trial.suggest_categorical(key, list(spec["choices"]))
            else:
                values[key] = spec
        return schedule_from_dict(values)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _PickTrial:
    """A stand-in trial that picks the low end of every range and the first choice (the high end and the last
    with `pick_high`), except choice `index` of parameter `key`: concrete schedules to validate a space with."""

    def __init__(self, pick_high: bool = False, key: str | None = None, index: int = 0):
        self.pick_high, self.key, self.index = pick_high, key, index

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return high if self.pick_high else low

    def suggest_categorical(self, name: str, choices: list) -> Any:
        if name == self.key:
            return choices[self.index]
        return choices[-1] if self.pick_high else choices[0]


def _choices(spec: Any) -> list | None:
    """The choices of one inline parameter (None for a range or a fixed value)."""
    if isinstance(spec, dict):
        return list(spec["choices"])
    if isinstance(spec, list) and not (len(spec) == 2 and all(_is_num(v) for v in spec)):
        return list(spec)
    return None


def parse_search_space(value: Any, path: str = "search_space") -> Any:
    """A named `search_spaces` space (string or `{name: ...}`) or an `InlineSpace`; errors name the field."""
    if isinstance(value, dict) and set(value) == {"name"}:
        value = value["name"]
    if isinstance(value, str):
        try:
            return get_search_space(value)
        except ConfigError as err:
            raise ConfigError(path, err.message) from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(path, f"expected a search space name or an inline mapping, got {value!r}")
    for key, spec in value.items():
        if isinstance(spec, dict):
            if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(f"{path}.{key}", "a mapping here must be {choices: [a non-empty list]}")
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{path}.{key}", "an empty list of choices")
            if len(spec) == 2 and all(_is_num(v) for v in spec) and spec[0] >= spec[1]:
                raise ConfigError(f"{path}.{key}", f"range [low, high] needs low < high, got {spec}")
    space = InlineSpace(dict(value))
    for pick_high in (False, True):
        try:
            space.suggest(_PickTrial(pick_high))
        except ConfigError as err:
            raise err.prefixed(path) from None
    # Every choice, not only the first and last: TPE draws them all, and a bad one used to fail inside the Tune
    # loop, after Ray had started, on a third of the suggestions.
    for key, spec in value.items():
        for index, choice in enumerate(_choices(spec) or []):
            for pick_high in (False, True):
                try:
                    space.suggest(_PickTrial(pick_high, key, index))
                except ConfigError as err:
                    raise ConfigError(f"{path}.{key}", f"choice {choice!r}: {err.field}: {err.message}") from None
    return space
