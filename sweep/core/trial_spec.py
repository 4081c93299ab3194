"""What one seed-group trial runs, typed: `TrialSpec`. A dict only at the Tune boundary.

Tune hands a trial its config as a dict (the searcher's suggestion merged into the sweep's fixed keys, the
"Sweep trials" section of docs/contracts.md), and saves it with its experiment state, so the keys and
their meaning are a contract that a resumed sweep of an older version still reads. `TrialSpec.to_config()`
makes that dict on the driver and `TrialSpec.from_config()` reads it back at the top of every group
trial; everything in between uses the typed fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


# Keys the searchers add per group besides schedule, baseline and seeds (kept as they are).
_PER_GROUP_EXTRAS = ("optuna_trial", "source_group", "finalist_rank")


@dataclass(frozen=True)
class ResourceSpec:
    """Each seed run's Train workers."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 0  # a trial config from before this setting existed keeps the old behaviour (no retry)


@dataclass(frozen=True)
class TrialSpec:
    """The fixed part of every group's trial (from the sweep config) plus, once the searcher has chosen, the
    group's `schedule`, `baseline` (preset label or None) and `seeds`."""

    backend: str = "trainer"
    trainer: Mapping[str, Any] | None = None
    simulator: Mapping[str, Any] | None = None
    script: Mapping[str, Any] | None = None
    rung_metric: str = "raw"
    cooldown_frac: float = 0.2
    probe_steps: tuple[int, ...] = ()
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    train_storage: str = ""
    divergence_penalty: float | None = None
    scratch_dir: str | None = None
    schedule: Mapping[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    seeds: tuple[int, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> Mapping[str, Any]:
        """The backend's section (YAML form): the trainer, simulator or script section."""
        return {"trainer": self.trainer, "simulator": self.simulator, "script": self.script}[self.backend] or {}

    def to_config(self) -> dict[str, Any]:
        """The trial config dict Tune carries. Without a schedule (the fixed part), only the fixed keys."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "trainer": None if self.trainer is None else dict(self.trainer),
            "simulator": None if self.simulator is None else dict(self.simulator),
            "script": None if self.script is None else dict(self.script),
            "rung_metric": self.rung_metric,
            "cooldown_frac": self.cooldown_frac,
            "probe_steps": list(self.probe_steps),
            "resources": {"workers": self.resources.workers, "use_gpu": self.resources.use_gpu,
                          "cpus_per_worker": self.resources.cpus_per_worker,
                          "max_failures": self.resources.max_failures},
            "train_storage": self.train_storage,
            "divergence_penalty": self.divergence_penalty,
            "scratch_dir": self.scratch_dir,
        }
        if self.schedule:
            out.update(schedule=dict(self.schedule), baseline=self.baseline, seeds=list(self.seeds), **self.extras)
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TrialSpec":
        """A trial config dict (as Tune hands it to the trial) read back; absent keys take the defaults."""
        res = config.get("resources") or {}
        return cls(
            backend=str(config.get("backend") or "trainer"),
            trainer=config.get("trainer"), simulator=config.get("simulator"), script=config.get("script"),
            rung_metric=str(config.get("rung_metric") or "raw"),
            cooldown_frac=float(config.get("cooldown_frac", 0.2)),
            probe_steps=tuple(int(s) for s in config.get("probe_steps") or ()),
            resources=ResourceSpec(workers=int(res.get("workers", 1)), use_gpu=bool(res.get("use_gpu", False)),
                                   cpus_per_worker=float(res.get("cpus_per_worker", 1.0)),
                                   max_failures=int(res.get("max_failures", 0))),
            train_storage=str(config.get("train_storage") or ""),
            divergence_penalty=config.get("divergence_penalty"),
            scratch_dir=config.get("scratch_dir"),
            schedule=dict(config.get("schedule") or {}),
            baseline=config.get("baseline") or None,
            seeds=tuple(int(s) for s in config.get("seeds") or ()),
            extras={k: config[k] for k in _PER_GROUP_EXTRAS if k in config},
        )
