"""The small sections of a sweep config (`scheduler`, `verdict`, `resources`, `mlflow`, `optuna`), each a
frozen dataclass whose `parse` validates its mapping and names the dotted field of the first bad value.

`sweep.config.SweepConfig` assembles them; they live here to keep that module readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search_spaces.errors import ConfigError
from search_spaces.validation import check_bool, check_int, check_number, check_opt_str, check_section
from sweep.config.store_uris import check_database_url, check_tracking_uri

__all__ = ["RUNG_METRICS", "MlflowSection", "OptunaSection", "ResourcesSection", "SchedulerSection", "VerdictSection"]

# What ASHA compares at a rung (docs/design.md, "Rung metrics"): the raw mean val loss, the loss after a
# short cooldown probe to the floor, or the final loss a Multi-Power-Law fit predicts under the group's own
# remaining schedule.
RUNG_METRICS = ("raw", "cooldown", "predicted")


@dataclass(frozen=True)
class SchedulerSection:
    """ASHA over seed groups. `grace_period` is in optimizer steps (ASHA's time attribute is `step`).

    `rung_metric` says what ASHA compares at a rung (see RUNG_METRICS); `cooldown_frac` is the length of a
    cooldown probe as a fraction of the steps done so far (only used by `rung_metric: cooldown`).
    """

    grace_period: int = 20
    reduction_factor: float = 2.0
    # The default by BENCHMARKS.md ("Rung metrics on the tiny GPT", "Search efficiency"): on real GPT curves the
    # cooldown probe was the only rung metric that ranked shapes by their final loss at all; `predicted` won
    # only on the simulator, whose curves are the very law it fits. A script cannot fork, so it gets `raw`.
    rung_metric: str = "cooldown"
    cooldown_frac: float = 0.2
    enabled: bool = True

    @staticmethod
    def parse(d: Any, path: str = "scheduler") -> "SchedulerSection":
        d = check_section(d, {"grace_period", "reduction_factor", "rung_metric", "cooldown_frac", "enabled"}, path)
        out = SchedulerSection()
        rung = d.get("rung_metric", out.rung_metric)
        if rung not in RUNG_METRICS:
            raise ConfigError(f"{path}.rung_metric", f"expected one of {', '.join(RUNG_METRICS)}, got {rung!r}")
        factor = check_number(d.get("reduction_factor", out.reduction_factor), f"{path}.reduction_factor",
                              lo=1.0, lo_open=True)
        cooldown = check_number(d.get("cooldown_frac", out.cooldown_frac), f"{path}.cooldown_frac",
                                lo=0.0, lo_open=True)
        if cooldown > 1.0:
            raise ConfigError(f"{path}.cooldown_frac", f"must be <= 1 (a fraction of the steps so far), got {cooldown}")
        return SchedulerSection(
            grace_period=check_int(d.get("grace_period", out.grace_period), f"{path}.grace_period", 1),
            reduction_factor=factor,
            rung_metric=rung,
            cooldown_frac=cooldown,
            enabled=check_bool(d.get("enabled", True), f"{path}.enabled"),
        )

    def milestones(self, max_step: int) -> list[int]:
        """ASHA's rung milestones below `max_step`, lowest first: grace_period x reduction_factor^k, rounded
        up (ASHA decides at the first result with step >= the exact milestone, so a probe planned at the
        rounded-up step lands on that very result)."""
        out, k = [], 0
        while (m := self.grace_period * self.reduction_factor ** k) < max_step:
            out.append(int(math.ceil(m - 1e-9)))
            k += 1
        return out


@dataclass(frozen=True)
class VerdictSection:
    """What the sweep hopes to resolve: a paired effect of `effect` nats against a baseline at significance
    `alpha` with power `power`. `correction` is how the verdicts of one report are held to `alpha` as a family
    (`sweep.stats.verdicts.CORRECTIONS`: holm, the default, bonferroni, fdr_bh or none). `seed_std` is the std of
    the *paired per-seed differences* (what
    `sweep plan-seeds --std` takes and `--from-sweep` measures); knowing only one group's seed-to-seed std
    sigma, use sqrt(2) x sigma (an upper bound: shared seed effects cancel in a pair). With `effect` set,
    `sweep run` warns when the sweep's seed count cannot resolve it (`sweep.stats.planning`)."""

    effect: float | None = None
    seed_std: float = 0.0015
    alpha: float = 0.01
    power: float = 0.8
    correction: str = "holm"

    @staticmethod
    def parse(d: Any, path: str = "verdict") -> "VerdictSection":
        from sweep.stats.verdicts import check_correction

        d = check_section(d, {"effect", "seed_std", "alpha", "power", "correction"}, path)
        out = VerdictSection()
        effect = d.get("effect")
        if effect is not None:
            effect = check_number(effect, f"{path}.effect", lo=0.0, lo_open=True)
        alpha = check_number(d.get("alpha", out.alpha), f"{path}.alpha", lo=0.0, lo_open=True)
        power = check_number(d.get("power", out.power), f"{path}.power", lo=0.0, lo_open=True)
        if alpha >= 0.5:
            raise ConfigError(f"{path}.alpha", f"must be < 0.5, got {alpha}")
        if power >= 1.0:
            raise ConfigError(f"{path}.power", f"must be < 1, got {power}")
        seed_std = check_number(d.get("seed_std", out.seed_std), f"{path}.seed_std", lo=0.0, lo_open=True)
        return VerdictSection(effect=effect, seed_std=seed_std,
                              alpha=alpha, power=power,
                              correction=check_correction(d.get("correction", out.correction), f"{path}.correction"))


@dataclass(frozen=True)
class ResourcesSection:
    """Per seed run: `workers` DDP ranks, each with `cpus_per_worker` CPUs (fractions allowed) and a GPU
    when `use_gpu`. A group holds seeds x workers of them at once.

    `max_failures`: how often a seed run restarts from its last checkpoint after one of its workers failed
    (a process killed, out of memory, a lost node, an error in the training code) before its group fails.
    Node preemptions are retried without limit and do not count (Ray Train's own rule)."""

    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    max_failures: int = 2

    @staticmethod
    def parse(d: Any, path: str = "resources") -> "ResourcesSection":
        d = check_section(d, {"workers", "use_gpu", "cpus_per_worker", "max_failures"}, path)
        out = ResourcesSection()
        return ResourcesSection(
            workers=check_int(d.get("workers", out.workers), f"{path}.workers", 1),
            use_gpu=check_bool(d.get("use_gpu", out.use_gpu), f"{path}.use_gpu"),
            cpus_per_worker=check_number(d.get("cpus_per_worker", out.cpus_per_worker), f"{path}.cpus_per_worker",
                                         lo=0.0, lo_open=True),
            max_failures=check_int(d.get("max_failures", out.max_failures), f"{path}.max_failures", 0),
        )


@dataclass(frozen=True)
class MlflowSection:
    """Tracking URI (default: sqlite file in the sweep folder) and experiment (default: the sweep name)."""

    tracking_uri: str | None = None
    experiment: str | None = None

    @staticmethod
    def parse(d: Any, path: str = "mlflow") -> "MlflowSection":
        d = check_section(d, {"tracking_uri", "experiment"}, path)
        uri = check_opt_str(d.get("tracking_uri"), f"{path}.tracking_uri")
        return MlflowSection(
            tracking_uri=None if uri is None else check_tracking_uri(uri, f"{path}.tracking_uri"),
            experiment=check_opt_str(d.get("experiment"), f"{path}.experiment"),
        )


@dataclass(frozen=True)
class OptunaSection:
    """Optional Optuna storage URL (sqlite/postgres, for optuna-dashboard) and the TPE sampler seed."""

    storage: str | None = None
    seed: int | None = 0

    @staticmethod
    def parse(d: Any, path: str = "optuna") -> "OptunaSection":
        d = check_section(d, {"storage", "seed"}, path)
        storage = check_opt_str(d.get("storage"), f"{path}.storage")
        if storage is not None:
            check_database_url(storage, f"{path}.storage")
        seed = d.get("seed", 0)
        if seed is not None:
            check_int(seed, f"{path}.seed", 0)
        return OptunaSection(storage=storage, seed=seed)
