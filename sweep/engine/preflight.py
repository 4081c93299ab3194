"""The checks of a sweep that need this machine or its stores, made before Ray starts and before any file
is written (the config itself was validated when it was parsed)."""

from __future__ import annotations

import os

from search_spaces.errors import ConfigError
from sweep.config import SweepConfig
from sweep.config.store_uris import check_database_url, check_tracking_uri
from sweep.core import storage
from sweep.engine.resources import concurrency, local_resources
from trainable.config import check_runs_here


def check_before_start(cfg: SweepConfig) -> None:
    """Everything about `cfg` that can be refused before Ray starts and before any file is written: the
    storage can hold the sweep folder, the stores' drivers are installed here, and, for a local Ray (no
    RAY_ADDRESS), that this machine can hold one group and run its trainer config."""
    import ray

    if (why := storage.unwritable(cfg.storage)) is not None:
        raise ConfigError("storage", f"cannot hold the sweep folder {cfg.sweep_dir}: {why}")
    # The stores this run opens: their database drivers must be installed where it runs.
    check_tracking_uri(cfg.tracking_uri, "mlflow.tracking_uri", need_driver=True)
    if cfg.optuna.storage is not None:
        check_database_url(cfg.optuna.storage, "optuna.storage", need_driver=True)
    if not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        # A local cluster is this machine: refuse a group it can never hold before spending Ray's start on it.
        concurrency(cfg, local_resources(cfg.resources.use_gpu), where="this machine (no RAY_ADDRESS: a local Ray)")
        if cfg.trainer is not None:
            check_runs_here(cfg.trainer, cfg.resources.workers, processes_field="resources.workers")
