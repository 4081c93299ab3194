"""What one seed group holds while it runs, and how many groups fit a cluster at once."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from search_spaces.errors import ConfigError
from sweep.config import SweepConfig


@dataclass(frozen=True)
class GroupResources:
    """What one seed group holds while it runs: seeds x workers Train workers (the simulator: the trial's
    own process only)."""

    cpus: float
    gpus: float


def group_resources(cfg: SweepConfig) -> GroupResources:
    """What one group holds. A simulated group runs its seeds inside the trial (no Train workers), so it
    takes `resources.cpus_per_worker` CPUs once: a fraction of a CPU lets several groups run at once."""
    if cfg.runner.runs_in_trial:
        return GroupResources(cpus=cfg.resources.cpus_per_worker, gpus=0.0)
    n = len(cfg.seeds) * cfg.resources.workers
    return GroupResources(cpus=n * cfg.resources.cpus_per_worker, gpus=float(n) if cfg.resources.use_gpu else 0.0)


def local_resources(count_gpus: bool) -> dict[str, float]:
    """What a local Ray started here would have at most: this machine's CPUs (and GPUs, counted only when asked:
    it imports torch)."""
    gpus = 0.0
    if count_gpus:
        import torch

        gpus = float(torch.cuda.device_count())
    return {"CPU": float(os.cpu_count() or 1), "GPU": gpus}


def concurrency(cfg: SweepConfig, cluster: dict[str, float], where: str = "the cluster") -> int:
    """How many groups may run at once: the configured maximum, lowered so that every running group's Train
    workers fit the cluster (otherwise a worker group waits and times out instead of queueing in Tune,
    because Train workers get placement groups outside Tune's)."""
    need = group_resources(cfg)
    fits = [cfg.max_concurrent_trials]
    if need.cpus > 0:
        fits.append(int(math.floor(cluster.get("CPU", 0.0) / need.cpus + 1e-9)))
    if need.gpus > 0:
        fits.append(int(math.floor(cluster.get("GPU", 0.0) / need.gpus + 1e-9)))
    n = min(fits)
    if n < 1:
        have = f"{cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs"
        why = (f"its {len(cfg.seeds)} simulated seeds run in one process" if cfg.runner.runs_in_trial else
               f"{len(cfg.seeds)} seeds x {cfg.resources.workers} workers")
        raise ConfigError(
            "resources",
            f"one group needs {need.cpus:g} CPUs and {need.gpus:g} GPUs ({why}) but {where} has {have}",
        )
    return n
