"""Shared helpers for the sweep tests (no tests here): a tiny token folder, a tiny sweep config, and a driver
killed at a chosen moment with its Ray cleaned up.

The token stream is a noisy counting sequence, so a 2-layer GPT learns it within a few steps and val_loss
moves (schedules then differ measurably) while every run stays a few seconds long on 2 CPU cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import numpy as np

from trainable.data.shards import write_shard


def make_token_dir(root: Path, train_tokens: int = 120_000, val_tokens: int = 8_192) -> Path:
    """`train_000000.bin` / `val_000000.bin` with a learnable stream (next = previous + 1 mostly)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        base = np.arange(n) % 512
        noise = rng.random(n) < 0.1
        tokens = np.where(noise, rng.integers(0, 512, n), base).astype(np.uint16)
        write_shard(root / f"{split}_000000.bin", tokens)
    return root


def tiny_sweep(tmp: Path, name: str = "t", **over: Any) -> dict[str, Any]:
    """A sweep config dict that runs in seconds per group: 12 steps, eval (and ASHA decision) every 4."""
    data_dir = make_token_dir(tmp / "tokens") if not (tmp / "tokens").exists() else tmp / "tokens"
    cfg: dict[str, Any] = {
        "name": name,
        "trainer": {
            "model": {"name": "tiny", "vocab_size": 512, "block_size": 32},
            "data": {"dir": str(data_dir), "bundled": False},
            "optimizer": {"lr": 3e-3},
            "horizon": {"steps": 12},
            "batch": {"micro_batch_size": 4, "seq_len": 32},
            "eval": {"interval": 4, "max_tokens": 1024},
            "device": "cpu",
        },
        "search_space": "wsd",
        "baselines": ["constant"],
        "seeds": [0, 1],
        "budget": 2,
        "scheduler": {"grace_period": 4, "reduction_factor": 2},
        "resources": {"workers": 2, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 1,
        "storage": str(tmp / "sweeps"),
        "optuna": {"storage": f"sqlite:///{tmp}/optuna.db", "seed": 0},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def end_session(pid: int) -> None:
    """SIGKILL what is left of a driver started with `start_new_session=True` (its Ray included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_and_kill_when(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, ready: Callable[[], bool],
                      timeout_s: float = 400, poll_s: float = 0.2, what: str = "the point to kill it at") -> None:
    """Start `python -m sweep.cli ARGV` as a driver in its own session (output to `log_path`), SIGKILL it once
    `ready()` is true, then SIGKILL what its Ray left in that session. Fails the test when the driver ends
    first or `ready()` stays false for `timeout_s`."""
    with open(log_path, "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", *argv], cwd=cwd, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready():
                assert driver.poll() is None, log_path.read_text()[-5000:]
                if time.monotonic() > deadline:
                    pytest.fail(f"the driver never reached {what} in {timeout_s:g} s")
                time.sleep(poll_s)
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
        finally:
            time.sleep(1)
            end_session(driver.pid)


def resumed_seed_runs(env: dict[str, str]) -> dict[str, int]:
    """Seed run name -> the checkpoint step it resumed from, as its rank 0 printed it, read from the Ray worker
    logs of every driver started with `env` (`ray_env`; Train V2 does not forward worker prints to the driver)."""
    out: dict[str, int] = {}
    for path in Path(env["RAY_TMPDIR"]).glob("ray/session_*/logs/worker-*.out"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("seed run ") and " resumed from its checkpoint at step " in line:
                name, rest = line[len("seed run "):].split(" resumed from its checkpoint at step ", 1)
                out[name] = int(rest.split(";", 1)[0])
    return out


def ray_env(tmp: Path) -> dict[str, str]:
    """Environment for a driver subprocess: its own HOME (no leftover Ray auth token), temp and Ray folders."""
    env = dict(os.environ)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    ray_tmp = Path("/tmp") / f"rt{os.getpid()}{abs(hash(str(tmp))) % 10_000}"
    ray_tmp.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        RAY_TMPDIR=str(ray_tmp),
        TMPDIR=str(ray_tmp),
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.25",
        RAY_DEDUP_LOGS="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("RAY_ADDRESS", None)
    return env
