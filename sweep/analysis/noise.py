"""What `sweep plan-seeds --from-sweep NAME` plans with: the seed noise measured on a finished sweep's
baselines, its verdict effect and the size of its report's family of comparisons."""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.errors import ConfigError
from sweep.analysis.content import baseline_noise
from sweep.analysis.read import locate_sweep, read_sweep
from sweep.stats.planning import NoiseEstimate


@dataclass(frozen=True)
class PlanningInputs:
    effect: float
    std: float  # the std to plan with
    std_source: str  # which estimate it is, in words
    family: tuple[int, str]  # (comparisons in the sweep's report, correction)
    noise: NoiseEstimate


def planning_inputs(name: str, storage: str | None, tracking_uri: str | None, effect: float | None) -> PlanningInputs:
    """Measure sweep `name`'s seed noise on its finished baselines; `effect` defaults to its `verdict.effect`."""
    location = locate_sweep(name, storage, tracking_uri)
    if effect is None:
        effect = location.config.verdict.effect if location.config is not None else None
        if effect is None:
            raise ConfigError("--effect", f"required: sweep {name!r} sets no verdict.effect")
    noise = baseline_noise(read_sweep(location).groups)
    picked = noise.planning_std()
    if picked is None:
        raise ConfigError("--from-sweep", f"sweep {name!r} has no finished baseline group with two or more "
                                          "seeds: no seed std to measure")
    cfg = location.config
    family = (cfg.verdict_family_size(), cfg.verdict.correction) if cfg is not None else (1, "holm")
    return PlanningInputs(effect=effect, std=picked[0], std_source=picked[1], family=family, noise=noise)
