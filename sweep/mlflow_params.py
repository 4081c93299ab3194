"""What a sweep run records about its inputs: the config as flat MLflow params, without secrets, plus
provenance (git commit, package versions).

Credentials reach MLflow only through the environment (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN);
a config may still hold a URI with ``user:password@`` or a key named like a secret, and neither may end
up in a param, a tag or the config artifact.
"""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

PACKAGES = ("torch", "ray", "optuna", "mlflow", "schedsweep")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_SECRET_KEY = re.compile(r"password|passwd|secret|token|credential|api[_-]?key", re.IGNORECASE)


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


def redact_uri(value: str) -> str:
    """Drop the ``user:password@`` part of a URI; other strings pass unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return value


def loggable_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params: flat keys, secrets dropped, URIs without userinfo, long values cut."""
    params = {}
    for key, value in flatten(config).items():
        if _SECRET_KEY.search(key.rsplit(".", 1)[-1]):
            continue
        text = redact_uri(value) if isinstance(value, str) else str(value)
        params[key] = text[:MAX_PARAM_CHARS]
    return params


def redact_config(config: Any) -> Any:
    """The same config with secret-looking keys removed and URIs redacted (for the YAML artifact)."""
    if isinstance(config, Mapping):
        return {k: redact_config(v) for k, v in config.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(config, list):
        return [redact_config(v) for v in config]
    if isinstance(config, str):
        return redact_uri(config)
    return config


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
