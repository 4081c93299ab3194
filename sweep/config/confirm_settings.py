"""The `confirm:` settings of a sweep config (and of `sweep confirm`'s flags): finalists, horizons, seeds,
downstream evaluation."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from search_spaces.errors import ConfigError
from search_spaces.validation import check_int, check_keys

_FACTOR_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*x?\s*$")


def parse_horizons(text: str, field: str = "--horizons") -> tuple[float, ...]:
    """`1x,2x,4x` -> (1.0, 2.0, 4.0): positive factors of the sweep's horizon, ascending, no repeats."""
    factors: list[float] = []
    for part in str(text).split(","):
        m = _FACTOR_RE.match(part)
        value = float(m.group(1)) if m else math.nan
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(field, f"expected factors like 1x,2x,4x, got {part.strip()!r}")
        if value in factors:
            raise ConfigError(field, f"{part.strip()} appears twice")
        factors.append(value)
    return tuple(sorted(factors))


def horizon_label(factor: float) -> str:
    """`2.0` -> `2x`, `1.5` -> `1.5x`."""
    return f"{factor:g}x"


@dataclass(frozen=True)
class ConfirmSettings:
    """What `sweep confirm` runs: a `confirm:` block of a YAML file, or the command-line flags (which win).

        confirm: {top: 2, horizons: [1x, 2x, 4x], seeds: 5, reuse_sweep_seeds: false, lm_eval_tasks: default,
                  lm_eval_limit: null}
    """

    top: int = 2
    horizons: tuple[float, ...] = (1.0, 2.0, 4.0)
    seeds: int = 5
    lm_eval_tasks: str = "default"
    lm_eval_limit: int | None = None
    reuse_sweep_seeds: bool = False

    @staticmethod
    def parse(d: Any, path: str = "confirm") -> "ConfirmSettings":
        d = {} if d is None else check_keys(
            d, {"top", "horizons", "seeds", "reuse_sweep_seeds", "lm_eval_tasks", "lm_eval_limit"}, path)
        out = ConfirmSettings()
        horizons = d.get("horizons", out.horizons)
        if isinstance(horizons, (list, tuple)):
            horizons = ",".join(str(h) for h in horizons)
        tasks = d.get("lm_eval_tasks", out.lm_eval_tasks)
        if isinstance(tasks, (list, tuple)):
            tasks = ",".join(str(t) for t in tasks)
        if not isinstance(tasks, str) or not tasks.strip():
            raise ConfigError(f"{path}.lm_eval_tasks", f"expected default, local, none or task names, got {tasks!r}")
        limit = d.get("lm_eval_limit")
        reuse = d.get("reuse_sweep_seeds", out.reuse_sweep_seeds)
        if not isinstance(reuse, bool):
            raise ConfigError(f"{path}.reuse_sweep_seeds", f"expected true or false, got {reuse!r}")
        return ConfirmSettings(
            top=check_int(d.get("top", out.top), f"{path}.top", 1),
            horizons=parse_horizons(str(horizons), f"{path}.horizons"),
            seeds=check_int(d.get("seeds", out.seeds), f"{path}.seeds", 1),
            lm_eval_tasks=tasks,
            lm_eval_limit=None if limit is None else check_int(limit, f"{path}.lm_eval_limit", 1),
            reuse_sweep_seeds=reuse,
        )
