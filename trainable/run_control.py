"""What the owner of a seed run and the run's workers share: the stop signal, the exception a stopped run
ends with, and the node-local scratch folder. Both the GPT worker (`trainable.ray_trainable`) and the
script launcher (`trainable.external.launcher`) use it, so neither imports the other."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray

_STOP_CHECK_TIMEOUT_S = 60.0


class RunStopped(RuntimeError):
    """The run's owner asked it to stop (e.g. ASHA stopped the seed group it belongs to)."""


@ray.remote(num_cpus=0)
class StopSignal:
    """A flag the workers of one or more runs check at every report; whoever owns the runs sets it."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def stop_requested(stop_signal: Any) -> bool:
    """Whether `stop_signal` is set, or gone (its owner ended: the run is orphaned). False without a signal
    or on a slow answer."""
    if stop_signal is None:
        return False
    try:
        return bool(ray.get(stop_signal.is_set.remote(), timeout=_STOP_CHECK_TIMEOUT_S))
    except ray.exceptions.RayActorError:
        return True
    except ray.exceptions.GetTimeoutError:
        return False  # a slow answer on a busy machine is not a stop


def default_scratch_dir() -> str:
    """The node-local folder seed runs write their own files into when the sweep names none."""
    return str(Path(tempfile.gettempdir()) / "schedsweep-scratch")


def run_scratch_dir(scratch_dir: str | None, run_name: str) -> Path:
    """One run's scratch folder: `<scratch_dir or the default>/<run name>`, the same path on every rank."""
    return Path(scratch_dir or default_scratch_dir()) / run_name
