"""What one seed run is: the built-in GPT trainer, the loss-law simulator, or an external script. One class
per backend, each owning its section of the sweep config and every decision that depends on the backend,
so the rest of the service asks its backend instead of branching on its name.

    trainer:   {model: tiny, horizon: {steps: 60}, ...}   TrainerBackend   (trainable.config.TrainConfig)
    simulator: {law: mpl_25m, total_steps: 24000, ...}    SimulatorBackend (trainable.simulator.SimulatorConfig)
    script:    {path: train.py, horizon_steps: 400, ...}  ScriptBackend    (sweep.config.script.ScriptSection)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from search_spaces.errors import ConfigError
from search_spaces.validation import check_section
from sweep.config.script import ScriptSection
from trainable.config import TrainConfig

# Keys of the trainer section that the sweep sets itself for every seed run.
SWEEP_OWNED_TRAINER_KEYS = ("schedule", "seed", "data_seed")


class Backend(ABC):
    """One backend: its validated section and what follows from it."""

    name: ClassVar[str]
    # Seeds that run inside the group trial's own process (no Ray Train workers, nothing to stop on the side).
    runs_in_trial: ClassVar[bool] = False
    # Can fork a run for a cooldown probe at a rung (the `cooldown` rung metric).
    can_probe: ClassVar[bool] = True
    # Leaves model checkpoints that lm-eval can evaluate (the confirmation's downstream step).
    has_lm_checkpoints: ClassVar[bool] = False
    section: Any

    @classmethod
    @abstractmethod
    def parse(cls, value: Any) -> "Backend":
        """Validate the section (a ConfigError names `<backend>.<field>`)."""

    @abstractmethod
    def section_dict(self) -> dict[str, Any]:
        """The section in its YAML form, as `parse` accepts it."""

    @abstractmethod
    def total_steps(self, workers: int) -> int:
        """The horizon T of one run (a token horizon resolves with the world size)."""

    def known_horizon(self) -> int | None:
        """T when it does not depend on the world size (a trainer's token horizon does)."""
        return self.total_steps(1)

    def penalty_floor(self) -> tuple[float, str] | None:
        """The least loss a diverged group may be told as, and where it comes from (docs/design.md,
        "Divergence"); None when unknown before a run."""
        return None

    @staticmethod
    @abstractmethod
    def scale_horizon(section: Mapping[str, Any], factor: float) -> dict[str, Any]:
        """The section (YAML form) with its horizon `factor` times as long (a confirmation stage)."""

    @staticmethod
    @abstractmethod
    def horizon_and_peak_lr(section: Mapping[str, Any], schedule: Mapping[str, Any], workers: int) -> tuple[int, float]:
        """A run's horizon T and peak LR from the section as a trial carries it (YAML form)."""


def _scaled(value: int, factor: float) -> int:
    return max(1, int(round(value * factor)))


@dataclass(frozen=True)
class TrainerBackend(Backend):
    """The built-in GPT trainer (`trainable.train`), one DDP run per seed under Ray Train."""

    section: TrainConfig
    name: ClassVar[str] = "trainer"
    has_lm_checkpoints: ClassVar[bool] = True

    @classmethod
    def parse(cls, value: Any, path: str = "trainer") -> "TrainerBackend":
        d = check_section(value, set(TrainConfig.__dataclass_fields__) - {"_SECTIONS"}, path)
        for key in SWEEP_OWNED_TRAINER_KEYS:
            if key in d:
                raise ConfigError(f"{path}.{key}", "is set by the sweep for every run (search space, baselines, seeds)")
        ckpt = d.get("checkpoint")
        if isinstance(ckpt, dict) and ckpt.get("dir") is not None:
            raise ConfigError(f"{path}.checkpoint.dir", "is set by the sweep (checkpoints go to the sweep storage)")
        data = d.get("data")
        if isinstance(data, dict) and isinstance(data.get("dir"), str) and data["dir"] and "://" not in data["dir"]:
            # Ray Train workers run in their own working folders: a relative data path must not depend on it.
            d = {**d, "data": {**data, "dir": str(Path(data["dir"]).expanduser().resolve())}}
        try:
            return cls(TrainConfig.from_dict(d))
        except ConfigError as err:
            raise err.prefixed(path) from None

    def section_dict(self) -> dict[str, Any]:
        """The trainer section without what the sweep sets per run (schedule, seeds, checkpoint dir)."""
        d = self.section.to_dict()
        for key in SWEEP_OWNED_TRAINER_KEYS:
            d.pop(key, None)
        return d

    def total_steps(self, workers: int) -> int:
        return self.section.total_steps(workers)

    def known_horizon(self) -> int | None:
        return self.section.total_steps(1) if self.section.horizon.steps is not None else None

    def penalty_floor(self) -> tuple[float, str] | None:
        # ln(vocab): the loss of a uniform guess, which any run that trains at all ends below.
        vocab = self.section.model.gpt.vocab_size
        return math.log(vocab), f"ln {vocab}, the loss of a uniform guess over trainer.model's vocabulary"

    @staticmethod
    def scale_horizon(section: Mapping[str, Any], factor: float) -> dict[str, Any]:
        horizon = dict(section.get("horizon") or {})
        key = "steps" if horizon.get("steps") is not None else "tokens"
        horizon[key] = _scaled(int(horizon[key]), factor)
        return {**section, "horizon": horizon}

    @staticmethod
    def horizon_and_peak_lr(section: Mapping[str, Any], schedule: Mapping[str, Any], workers: int) -> tuple[int, float]:
        trainer = TrainConfig.from_dict({**section, "schedule": dict(schedule)})
        return trainer.total_steps(workers), trainer.optimizer.lr


@dataclass(frozen=True)
class SimulatorBackend(Backend):
    """The Multi-Power-Law loss simulator (`trainable.simulator`): all seeds of a group in the trial itself."""

    section: Any  # trainable.simulator.SimulatorConfig (imported when parsed: it pulls in scipy)
    name: ClassVar[str] = "simulator"
    runs_in_trial: ClassVar[bool] = True

    @classmethod
    def parse(cls, value: Any, path: str = "simulator") -> "SimulatorBackend":
        from trainable.simulator import SimulatorConfig

        d = check_section(value, set(SimulatorConfig.__dataclass_fields__), path)
        if d.get("checkpoint_dir") is not None:
            raise ConfigError(f"{path}.checkpoint_dir", "is set by the sweep (checkpoints go to the sweep storage)")
        try:
            return cls(SimulatorConfig.from_dict(d))
        except ConfigError as err:
            raise err.prefixed(path) from None

    def section_dict(self) -> dict[str, Any]:
        return self.section.to_dict()

    def total_steps(self, workers: int) -> int:
        return int(self.section.total_steps)

    def penalty_floor(self) -> tuple[float, str] | None:
        return float(self.section.initial_loss), "simulator.initial_loss, the highest loss the simulator reports"

    @staticmethod
    def scale_horizon(section: Mapping[str, Any], factor: float) -> dict[str, Any]:
        return {**section, "total_steps": _scaled(int(section["total_steps"]), factor)}

    @staticmethod
    def horizon_and_peak_lr(section: Mapping[str, Any], schedule: Mapping[str, Any], workers: int) -> tuple[int, float]:
        # Through the config itself, as the trainer backend does: its defaults (a law preset's own peak LR)
        # live in one place.
        from trainable.simulator import SimulatorConfig

        cfg = SimulatorConfig.from_dict(dict(section))
        return int(cfg.total_steps), float(cfg.peak_lr)


@dataclass(frozen=True)
class ScriptBackend(Backend):
    """An external torchrun training script (`trainable.external`), its vocabulary and losses unknown ahead."""

    section: ScriptSection
    name: ClassVar[str] = "script"
    can_probe: ClassVar[bool] = False  # a script cannot be forked for a cooldown probe

    @classmethod
    def parse(cls, value: Any, path: str = "script") -> "ScriptBackend":
        return cls(ScriptSection.parse(value, path))

    def section_dict(self) -> dict[str, Any]:
        return self.section.to_dict()

    def total_steps(self, workers: int) -> int:
        return int(self.section.horizon_steps)

    @staticmethod
    def scale_horizon(section: Mapping[str, Any], factor: float) -> dict[str, Any]:
        return {**section, "horizon_steps": _scaled(int(section["horizon_steps"]), factor)}

    @staticmethod
    def horizon_and_peak_lr(section: Mapping[str, Any], schedule: Mapping[str, Any], workers: int) -> tuple[int, float]:
        # The script's peak LR is not known to the sweep: its multipliers stand in.
        return int(section["horizon_steps"]), 1.0


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (TrainerBackend, SimulatorBackend, ScriptBackend)}
DEFAULT_BACKEND = "trainer"
