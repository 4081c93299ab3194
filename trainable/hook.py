"""The hook API for training scripts swept by schedsweep (`script:` backend). Stable and small:

    from trainable import hook

    lr = peak_lr * hook.lr_multiplier(step)          # the shape this trial is trying, at this step
    hook.report(step=step, val_loss=val, train_loss=loss, val_bpb=bpb, checkpoint=ckpt_dir)

* `lr_multiplier(step, total_steps=None)`: the multiplier (peak 1.0) for optimizer step `step` (0-based:
  the step about to be taken) of a run of T steps. In a sweep, T is the sweep's `script.horizon_steps`;
  alone, T is `total_steps` or `$SCHEDSWEEP_HORIZON_STEPS`.
* `lr_multiplier_at_fraction(frac)`: the same shape over a wall-clock budget (parameter-golf's warmdown
  style): `frac` = elapsed / budget in [0, 1].
* `report(...)`: on rank 0 sends the values to the sweep (every other rank's call does nothing) and returns
  once the sweep has them (typically within a second). A report at step >= T is the run's last one. `checkpoint`: a folder the script has completely written for this
  step; it is copied before `report` returns, so the script may overwrite it afterwards.
* `resume_checkpoint()`: the folder of the latest reported checkpoint when the sweep restarts this run
  (same files the script reported), else None.
* `should_stop()`: True once the sweep has stopped the run (ASHA); the launcher also terminates the script.
* `seed(default)`: the seed of this run of the group (use it if the script does not take `{seed}` in args).
* `device(default)` / `dist_backend(default)`: in a sweep, the torch device of this rank ("cuda:<local rank>"
  on a GPU worker, "cpu" on a CPU one) and the process-group backend that works there ("nccl" or "gloo");
  alone, `default`. A script written for GPUs (nanoGPT's `device = f"cuda:{local_rank}"`) runs on a CPU host
  by taking its device and backend from here.

Each report also says whether this process read the seed (`seed()`, or `{seed}` in the sweep's args) and
the schedule (`lr_multiplier...`): a group whose script ignored either gets a warning and no verdict.

Outside a sweep the script still runs alone: the shape comes from `$SCHEDSWEEP_SCHEDULE` or the command-line
flag `--lr-schedule NAME_OR_JSON` (a preset name such as `wsd_sqrt`, or the JSON of a schedule mapping such
as `{"preset": "wsd_sqrt", "cooldown_frac": 0.3}`); the flag is taken out of `sys.argv` when this module is
imported, so the script's own argument parser never sees it. `report` is then a no-op.

Importing this module imports neither torch nor ray; `search_spaces` (numpy) is loaded on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from trainable.external import channel

__all__ = ["device", "dist_backend", "in_sweep", "lr_multiplier", "lr_multiplier_at_fraction", "report",
           "resume_checkpoint", "seed", "should_stop", "horizon_steps"]

CLI_FLAG = "--lr-schedule"
# A fine grid for budget fractions: positions 0, 1/N, ..., 1 of the shape.
_FRACTION_GRID = 100_000


def _take_cli_flag(argv: list[str]) -> str | None:
    """Remove `--lr-schedule X` / `--lr-schedule=X` from argv and return X (the last one wins)."""
    value, i = None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == CLI_FLAG and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
        elif arg.startswith(CLI_FLAG + "="):
            value = arg.split("=", 1)[1]
            del argv[i]
        else:
            i += 1
    return value


_cli_schedule = _take_cli_flag(sys.argv)
_schedule: Any = None
_schedule_spec: str | None = None
_last_multiplier: float | None = None
_warned_horizon = False
_seed_read = False  # seed() was called in this process
_sent = 0  # reports written by this process
# How long `report` waits for the launcher to relay a report; past it the script goes on (never hangs on us).
_RELAY_WAIT_S = float(os.environ.get("SCHEDSWEEP_RELAY_WAIT_S", "600"))


def in_sweep() -> bool:
    """True when this process was started by the schedsweep launcher."""
    return bool(os.environ.get(channel.ENV_SEED)) and bool(os.environ.get(channel.ENV_SCHEDULE))


def _load_schedule() -> Any:
    global _schedule, _schedule_spec
    spec = os.environ.get(channel.ENV_SCHEDULE) or _cli_schedule
    if not spec:
        raise RuntimeError(
            "no LR schedule: run inside a schedsweep sweep, set SCHEDSWEEP_SCHEDULE=NAME_OR_JSON or pass "
            f"{CLI_FLAG} NAME_OR_JSON (e.g. {CLI_FLAG} nanogpt_cosine)"
        )
    if _schedule is not None and spec == _schedule_spec:
        return _schedule
    from search_spaces import schedule_from_dict

    text = spec.strip()
    d = json.loads(text) if text.startswith("{") else {"preset": text}
    _schedule, _schedule_spec = schedule_from_dict(d), spec
    return _schedule


def horizon_steps(total_steps: int | None = None) -> int:
    """T: the sweep's horizon in a sweep, else `total_steps`, else `$SCHEDSWEEP_HORIZON_STEPS`."""
    global _warned_horizon
    env = os.environ.get(channel.ENV_HORIZON)
    if env:
        horizon = int(env)
        if total_steps is not None and int(total_steps) != horizon and not _warned_horizon:
            _warned_horizon = True
            print(f"schedsweep hook: total_steps={total_steps} differs from the sweep's horizon_steps={horizon}; "
                  "the sweep's horizon is used", file=sys.stderr)
        return horizon
    if total_steps is None:
        raise RuntimeError("no horizon: pass total_steps=... or set SCHEDSWEEP_HORIZON_STEPS")
    return int(total_steps)


def lr_multiplier(step: int, total_steps: int | None = None) -> float:
    """The LR multiplier (peak 1.0) for optimizer step `step` (0..T-1; later steps get step T-1's value)."""
    global _last_multiplier
    total = horizon_steps(total_steps)
    s = min(max(int(step), 0), total - 1)
    _last_multiplier = float(_load_schedule().multiplier(s, total))
    return _last_multiplier


def lr_multiplier_at_fraction(frac: float) -> float:
    """The multiplier at fraction `frac` (clamped to [0, 1]) of a budget, e.g. elapsed_s / budget_s."""
    global _last_multiplier
    f = min(max(float(frac), 0.0), 1.0)
    _last_multiplier = float(_load_schedule().multiplier(int(round(f * _FRACTION_GRID)), _FRACTION_GRID + 1))
    return _last_multiplier


def seed(default: int = 0) -> int:
    """The seed the sweep gave this run, else `default`."""
    global _seed_read
    _seed_read = True
    value = os.environ.get(channel.ENV_SEED)
    return int(value) if value not in (None, "") else int(default)


def device(default: str = "cpu") -> str:
    """This rank's torch device in a sweep ("cuda:<local rank>" or "cpu"), else `default`."""
    return os.environ.get(channel.ENV_DEVICE) or default


def dist_backend(default: str = "nccl") -> str:
    """The torch.distributed backend for this sweep's workers ("nccl" on GPUs, "gloo" on CPUs), else `default`."""
    return os.environ.get(channel.ENV_DIST_BACKEND) or default


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)  # plain numbers, numpy and torch scalars
    except (TypeError, ValueError):
        raise TypeError(f"hook.report: {name} must be a number, got {value!r}") from None


def report(step: int, *, val_loss: float, train_loss: float | None = None, val_bpb: float | None = None,
           tokens: int | None = None, lr: float | None = None, checkpoint: str | os.PathLike | None = None,
           **extra: float) -> bool:
    """Send one eval point to the sweep (rank 0 only). Returns True when it was sent.

    `step`: optimizer steps done. `val_loss` is what the sweep ranks shapes by. `checkpoint`: a complete
    checkpoint folder for this step, copied now. `extra`: more numeric metrics, logged as they are.
    """
    path = os.environ.get(channel.ENV_REPORT_FILE)
    if not path or _rank() != 0:
        return False
    record: dict[str, Any] = {"step": int(step), "time": time.time()}
    for name, value in (("val_loss", val_loss), ("train_loss", train_loss), ("val_bpb", val_bpb), ("lr", lr),
                        *extra.items()):
        number = _number(name, value)
        if number is not None:
            record[name] = number
    if tokens is not None:
        record["tokens"] = int(tokens)
    if _last_multiplier is not None and "lr_multiplier" not in record:
        record["lr_multiplier"] = _last_multiplier
    record[channel.SEED_READ] = 1.0 if _seed_read else 0.0
    record[channel.SCHEDULE_READ] = 1.0 if _last_multiplier is not None else 0.0
    if checkpoint is not None:
        record["checkpoint"] = _snapshot(Path(checkpoint), int(step))
    channel.write_record(path, record)
    global _sent
    _sent += 1
    _wait_relayed(path, _sent)
    return True


def _wait_relayed(path: str, count: int) -> None:
    """Block until the launcher has handed report number `count` to the sweep (as the built-in trainer's
    report does): a run the sweep stops then ends at this report instead of training on meanwhile."""
    deadline = time.monotonic() + _RELAY_WAIT_S
    while channel.read_ack(path) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _snapshot(folder: Path, step: int) -> str:
    """Copy `folder` into the stage folder now, so the script may overwrite it once `report` returns."""
    if not folder.is_dir():
        raise FileNotFoundError(f"hook.report: checkpoint folder {folder} does not exist")
    stage = Path(os.environ.get(channel.ENV_STAGE_DIR) or folder.parent)
    target = stage / f"step_{step:08d}-{time.monotonic_ns()}"
    tmp = target.with_name(target.name + ".tmp")
    shutil.copytree(folder, tmp)
    tmp.rename(target)  # complete before the report line names it
    return str(target)


def resume_checkpoint() -> str | None:
    """The checkpoint folder to resume from (in a sweep: the latest one this run reported), else None."""
    value = os.environ.get(channel.ENV_RESUME_DIR)
    return value if value and Path(value).is_dir() else None


def should_stop() -> bool:
    """True once the sweep has asked this run to end (e.g. ASHA stopped its group)."""
    path = os.environ.get(channel.ENV_STOP_FILE)
    return bool(path) and os.path.exists(path)
