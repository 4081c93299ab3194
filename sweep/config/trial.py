"""The fixed part of a sweep's group trials, as a typed `TrialSpec`, from its validated config."""

from __future__ import annotations

from sweep.config.sweep_config import SweepConfig
from sweep.core import storage
from sweep.core.layout import TRAIN_DIR
from sweep.core.trial_spec import ResourceSpec, TrialSpec


def trial_spec(cfg: SweepConfig, scratch_dir: str | None = None) -> TrialSpec:
    """The fixed part of every group trial of the sweep `cfg`."""
    return TrialSpec(
        backend=cfg.backend,
        trainer=cfg.trainer_dict,
        simulator=cfg.simulator.to_dict() if cfg.simulator is not None else None,
        script=cfg.script.to_dict() if cfg.script is not None else None,
        rung_metric=cfg.scheduler.rung_metric,
        cooldown_frac=cfg.scheduler.cooldown_frac,
        probe_steps=tuple(cfg.scheduler.milestones(cfg.max_step()) if cfg.scheduler.enabled else ()),
        resources=ResourceSpec(workers=cfg.resources.workers, use_gpu=cfg.resources.use_gpu,
                               cpus_per_worker=cfg.resources.cpus_per_worker,
                               max_failures=cfg.resources.max_failures),
        train_storage=storage.join(cfg.sweep_dir, TRAIN_DIR),
        divergence_penalty=cfg.divergence_penalty,
        scratch_dir=scratch_dir,
    )
