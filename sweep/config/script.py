"""The `script:` section of a sweep config: sweep an existing torchrun training script as it is.

    script:
      path: examples/nanogpt_style/train.py   # resolved against the folder `sweep run` starts in
      args: [--batch-size, "8", --seed, "{seed}", --out-dir, "{run_dir}/out"]   # placeholders filled per run
      env: {DATA_DIR: /data/fineweb}           # added to the script's environment on every rank
      horizon_steps: 400                       # T: the step count the schedule is stretched over
      metrics_regex: null                      # for scripts that only print: named groups step, val_loss, ...
      timeout_s: 600                           # no report and no output for this long: the seed run fails
      metric_precision: null                   # the step of the printed val_loss (0.001 for 3 decimals);
                                               # null: inferred by `sweep report` from the values themselves

Validated like every other section: a bad value raises `ConfigError` naming `script.<field>`.
The launch itself lives in `trainable.external` (see `trainable.external.launcher`): in `args` and `env`
values, `{seed}` (the seed run's seed), `{horizon_steps}` and `{run_dir}` (a node-local folder of the seed
run, for outputs that concurrent seeds must not share) are replaced; other braces are left alone. The
script runs in its own folder, with the torchrun variables and `trainable.hook`'s environment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.errors import ConfigError
from search_spaces.validation import check_int, check_keys
from trainable.external import channel

# Named groups a metrics regex may capture; `step` and `val_loss` are required (ASHA and Optuna need them).
METRIC_GROUPS = ("step", "val_loss", "train_loss", "val_bpb", "tokens")
_REQUIRED_GROUPS = ("step", "val_loss")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The launcher sets these for the script; a config that sets them would break DDP.
_RESERVED_ENV = channel.TORCHRUN_ENV + channel.LAUNCHER_ENV
# Checkpoints a seed run keeps by default: the latest (what a resume starts from) and the one before it.
DEFAULT_KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class ScriptSection:
    """An external training script launched on every Ray Train worker with the torchrun environment."""

    path: str
    horizon_steps: int
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    metrics_regex: str | None = None
    timeout_s: float | None = 600.0
    metric_precision: float | None = None
    keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS

    @staticmethod
    def parse(d: Any, path: str = "script") -> "ScriptSection":
        d = check_keys(d, {"path", "horizon_steps", "args", "env", "metrics_regex", "timeout_s", "metric_precision",
                           "keep_checkpoints"}, path)
        script = d.get("path")
        if not isinstance(script, str) or not script.strip():
            raise ConfigError(f"{path}.path", f"expected the path of a Python training script, got {script!r}")
        resolved = Path(script).expanduser().resolve()
        if not resolved.is_file():
            raise ConfigError(f"{path}.path", f"no such file: {resolved}")
        if "horizon_steps" not in d:
            raise ConfigError(f"{path}.horizon_steps", "required: the number of optimizer steps of one run (T)")
        horizon = check_int(d["horizon_steps"], f"{path}.horizon_steps", 1)
        args = d.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{path}.args", f"expected a list of strings, got {args!r}")
        env = d.get("env") or {}
        if not isinstance(env, dict):
            raise ConfigError(f"{path}.env", f"expected a mapping of NAME: value, got {env!r}")
        for key, value in env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ConfigError(f"{path}.env", f"{key!r} is not an environment variable name")
            if key in _RESERVED_ENV:
                raise ConfigError(f"{path}.env.{key}", "is set by the launcher (the torchrun environment and the hook's)")
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ConfigError(f"{path}.env.{key}", f"expected a string or number, got {value!r}")
        regex = d.get("metrics_regex")
        if regex is not None:
            regex = _check_regex(regex, f"{path}.metrics_regex")
        timeout = d.get("timeout_s", 600.0)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
                raise ConfigError(f"{path}.timeout_s", f"expected a number of seconds > 0 or null, got {timeout!r}")
            timeout = float(timeout)
        precision = d.get("metric_precision")
        if precision is not None:
            if (isinstance(precision, bool) or not isinstance(precision, (int, float)) or not math.isfinite(precision)
                    or not 0 < precision < 1):
                raise ConfigError(f"{path}.metric_precision",
                                  f"expected the step of the printed metric in (0, 1) (e.g. 0.001) or null, got {precision!r}")
            precision = float(precision)
        keep = check_int(d.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS), f"{path}.keep_checkpoints", 1)
        return ScriptSection(
            path=str(resolved), horizon_steps=horizon, args=tuple(str(a) for a in args),
            env={k: str(v) for k, v in env.items()}, metrics_regex=regex, timeout_s=timeout,
            metric_precision=precision, keep_checkpoints=keep,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "horizon_steps": self.horizon_steps, "args": list(self.args), "env": dict(self.env),
            "metrics_regex": self.metrics_regex, "timeout_s": self.timeout_s, "metric_precision": self.metric_precision,
            "keep_checkpoints": self.keep_checkpoints,
        }


def _check_regex(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"expected a regular expression, got {value!r}")
    try:
        compiled = re.compile(value)
    except re.error as err:
        raise ConfigError(path, f"not a valid regular expression: {err}") from None
    unknown = sorted(set(compiled.groupindex) - set(METRIC_GROUPS))
    if unknown:
        raise ConfigError(path, f"unknown named group(s) {', '.join(unknown)} (allowed: {', '.join(METRIC_GROUPS)})")
    missing = [g for g in _REQUIRED_GROUPS if g not in compiled.groupindex]
    if missing:
        raise ConfigError(path, f"needs the named group(s) {', '.join(missing)}, e.g. (?P<step>\\d+)")
    return value
