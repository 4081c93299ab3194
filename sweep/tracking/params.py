"""What a sweep run records about its inputs: the config as flat MLflow params, without secrets, plus
provenance (git commit, package versions).

Credentials reach MLflow only through the environment (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN);
a config may still hold a URI with ``user:password@``, a key named like a secret, or a secret's value under
an innocent key, and none of them may end up in a param, a tag or the config artifact. The rules live in
`sweep.core.secrets`; this module applies them to what the MLflow callback logs.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from search_spaces import Schedule, schedule_from_dict
from search_spaces.errors import ConfigError
from sweep.core.secrets import env_secrets, is_secret_key, redact_text, redact_uri

__all__ = ["MAX_PARAM_CHARS", "PACKAGES", "flatten", "git_commit", "loggable_params", "package_versions",
           "schedule_from_params"]

PACKAGES = ("torch", "ray", "optuna", "mlflow", "schedsweep")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _clean(text: str, secrets: list[str]) -> str:
    """A string value as it may be logged: URI userinfo dropped, any known secret value masked."""
    return redact_text(redact_uri(text), secrets)


def loggable_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params: flat keys, keys under a secret-looking name dropped (at any depth, so
    ``credentials.user`` goes too), URIs without userinfo, the environment's secret values masked, long
    values cut."""
    secrets = env_secrets()
    params = {}
    for key, value in flatten(config).items():
        if any(is_secret_key(part) for part in key.split(".")):
            continue
        text = _clean(value if isinstance(value, str) else str(value), secrets)
        params[key] = text[:MAX_PARAM_CHARS]
    return params


def git_commit(repo_dir: Path | None = None) -> str:
    """The checkout's HEAD commit (suffixed ``-dirty`` with uncommitted changes), or "unknown"."""
    cwd = repo_dir or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def schedule_params(schedule_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule's `flat_params()` (contract), via `search_spaces.schedule_from_dict`."""
    return dict(schedule_from_dict(dict(schedule_dict)).flat_params())


# ---- reading params back ---------------------------------------------------------------------------------
# Group-run params that describe the group, not its schedule.
_GROUP_PARAMS = {"group_id", "baseline", "seeds", "seed"}


def _scalar(text: str) -> Any:
    """An MLflow param (always a string) back to the int, float, bool, None or string it was logged from."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def schedule_from_params(params: Mapping[str, str]) -> Schedule | None:
    """The schedule behind a group run's params (its `flat_params()`, contract), or None if unparsable.

    ``kind`` says which of the three forms was flattened: a shape (its fields), a preset (name and resolved
    arguments) or segments (``start``, ``seg<i>.<key>``).
    """
    flat = {k: _scalar(v) for k, v in params.items() if k not in _GROUP_PARAMS}
    kind = flat.pop("kind", None)
    try:
        if kind == "shape":
            return schedule_from_dict(flat)
        if kind == "preset":
            return schedule_from_dict({k: v for k, v in flat.items() if v is not None})
        if kind == "segments":
            count = int(flat.pop("n_segments"))
            segments: list[dict[str, Any]] = [{} for _ in range(count)]
            for key, value in flat.items():
                if key.startswith("seg") and "." in key:
                    index, field = key[3:].split(".", 1)
                    segments[int(index)][field] = value
            return schedule_from_dict({"start": flat.get("start", 0.0), "segments": segments})
    except (ConfigError, ValueError, TypeError, KeyError, IndexError):
        return None
    return None
