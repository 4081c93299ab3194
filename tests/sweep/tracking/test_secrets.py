"""No secret reaches MLflow params, tags, metric names or artifacts, nor the driver's output.

The end-to-end test runs a real one-group sweep (`sweep run` in a subprocess: real Ray, a real torchrun-style
launch of the example nanoGPT-style script through the `script:` backend, a real `mlflow server`) with
credentials in three places: the environment (MLflow's own MLFLOW_TRACKING_* variables), a password in the
tracking URI, and config values under secret-looking keys (`script.env.HF_TOKEN`, `script.env.WANDB_API_KEY`,
the one section that admits free-form keys). It then reads back everything the server holds and everything
the driver printed, and looks for each secret string. The unit tests cover the rules themselves.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from servers import mlflow_server  # noqa: E402
from test_sweep_run_helpers import ray_env  # noqa: E402

from sweep.config import SweepConfig  # noqa: E402
from sweep.core.secrets import redact_config  # noqa: E402
from sweep.core.secrets import (MASK, config_secrets, env_secrets, install_log_redaction, is_secret_key, redact_text,
                                redact_uri)
from sweep.tracking.params import loggable_params  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "nanogpt_style" / "train.py"


# ---- the rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["password", "MLFLOW_TRACKING_TOKEN", "HF_TOKEN", "apiKey", "api-key",
                                 "AWS_SECRET_ACCESS_KEY", "client_secret", "db.passwd", "credentials"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "horizon.tokens", "tracking_uri", "PWD", "seeds", "keep",
                                 "RAY_AUTH_MODE", "tokens_per_s"])
def test_keys_that_are_not_secret(key):
    # Token *counts* are not tokens: the trainer's horizon.tokens and eval.max_tokens must stay params.
    assert not is_secret_key(key)


def test_uri_redaction_drops_userinfo_and_masks_signed_queries():
    assert redact_uri("postgresql://optuna:hunter2@postgres:5432/optuna") == "postgresql://postgres:5432/optuna"
    assert redact_uri("https://acct.blob.core.windows.net/c/x?sv=1&sig=abc%2F") == \
        f"https://acct.blob.core.windows.net/c/x?sv=1&sig={MASK}"
    for unchanged in ("sqlite:///a/b.db", "s3://bucket/prefix", "./sweeps", "cosine"):
        assert redact_uri(unchanged) == unchanged


def test_text_redaction_masks_values_and_uri_userinfo():
    text = "POST http://alice:pa55word-xyz@mlflow:5000/api failed; token=tok-123456 retrying"
    assert redact_text(text, ["tok-123456"]) == "POST http://mlflow:5000/api failed; token=*** retrying"


def test_script_env_secret_never_reaches_params_or_config_artifact(tmp_path, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    token = "hf_" + uuid.uuid4().hex
    monkeypatch.setenv("SOME_API_KEY", "key-" + uuid.uuid4().hex)
    cfg = SweepConfig.from_dict({
        "name": "s", "search_space": "wsd", "seeds": [0],
        "script": {"path": str(script), "horizon_steps": 100,
                   "env": {"HF_TOKEN": token, "DATA_DIR": "/data"},
                   "args": ["--api", f"https://bob:{token}@hub.example/x"]},
        "mlflow": {"tracking_uri": "http://alice:uri-pw-123456@127.0.0.1:5000"},
        "storage": str(tmp_path / "sweeps"),
    }).to_dict()
    params = loggable_params(cfg)
    artifact = yaml.safe_dump(redact_config(cfg))
    blob = repr(params) + artifact
    assert token not in blob and "uri-pw-123456" not in blob
    assert params["script.env.DATA_DIR"] == "/data"            # innocent keys stay
    assert params["mlflow.tracking_uri"] == "http://127.0.0.1:5000"
    assert "script.env.HF_TOKEN" not in params
    # A secret value under an innocent key is masked when the environment knows it.
    monkeypatch.setenv("HF_TOKEN", token)
    assert token not in repr(loggable_params({"x": {"note": f"use {token}"}}))
    assert set(config_secrets(cfg)) >= {token, "uri-pw-123456"}
    # User names are not secrets: masking "schedsweep" would garble every path and tag holding that word.
    assert config_secrets({"optuna": {"storage": "postgresql+psycopg://schedsweep@postgres:5432/optuna"}}) == []
    assert token in env_secrets()


def test_log_redaction_covers_every_logger(monkeypatch, caplog):
    secret = "pw-" + uuid.uuid4().hex
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
    install_log_redaction()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("mlflow.utils.rest_utils").warning("retrying http://u:%s@h/api", secret)
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            logging.getLogger("some.child").exception("failed")
    assert secret not in caplog.text and "retrying http://h/api" in caplog.text


# ---- end to end -----------------------------------------------------------------------------------------
def _run_texts(client: MlflowClient, run_id: str, root: Path, path: str | None = None) -> list[tuple[str, bytes]]:
    """(artifact path, bytes) of every artifact of a run, downloaded through the tracking server."""
    out = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out += _run_texts(client, run_id, root, info.path)
        else:
            local = client.download_artifacts(run_id, info.path, str(root))
            out.append((info.path, Path(local).read_bytes()))
    return out


def everything_mlflow_holds(uri: str, scratch: Path) -> tuple[list[tuple[str, bytes]], int]:
    """Every experiment name/tag and every run's name, params, tags, metric names and artifacts, as
    (where, bytes) pairs; and the number of runs."""
    client = MlflowClient(tracking_uri=uri)
    items: list[tuple[str, bytes]] = []
    n_runs = 0
    for exp in client.search_experiments():
        items.append((f"experiment {exp.name}", repr((exp.name, exp.tags, exp.artifact_location)).encode()))
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            n_runs += 1
            where = f"run {run.info.run_name}"
            items.append((f"{where} info", repr(run.info).encode()))
            items.append((f"{where} params", repr(sorted(run.data.params.items())).encode()))
            items.append((f"{where} tags", repr(sorted(run.data.tags.items())).encode()))
            items.append((f"{where} metric names", repr(sorted(run.data.metrics)).encode()))
            dest = scratch / run.info.run_id
            dest.mkdir(parents=True)
            items += [(f"{where} artifact {p}", data) for p, data in _run_texts(client, run.info.run_id, dest)]
    return items, n_runs


@pytest.mark.ray
@pytest.mark.ddp
def test_no_secret_reaches_mlflow_or_driver_output(tmp_path: Path) -> None:
    secrets = {
        "MLFLOW_TRACKING_USERNAME": "user-" + uuid.uuid4().hex,
        "MLFLOW_TRACKING_PASSWORD": "pass-" + uuid.uuid4().hex,
        "MLFLOW_TRACKING_TOKEN": "token-" + uuid.uuid4().hex,
        "HF_TOKEN": "hf_" + uuid.uuid4().hex,
    }
    uri_password = "uripw-" + uuid.uuid4().hex
    in_config = {"HF_TOKEN": "hf_" + uuid.uuid4().hex, "WANDB_API_KEY": "wandb-" + uuid.uuid4().hex}
    with mlflow_server(tmp_path / "mlflow") as server:
        authed = server.replace("http://", f"http://alice:{uri_password}@")
        d = {
            "name": "secretive",
            "script": {"path": str(EXAMPLE), "horizon_steps": 8,
                       "args": ["--max-iters", "{horizon_steps}", "--eval-interval", "4", "--seed", "{seed}",
                                "--out-dir", "{run_dir}/out", "--batch-size", "4"],
                       "env": {"OMP_NUM_THREADS": "1", **in_config}, "timeout_s": 300},
            "search_space": "wsd", "baselines": ["constant"], "budget": 0, "seeds": [0],
            "scheduler": {"enabled": False},
            "resources": {"workers": 1, "cpus_per_worker": 1.0},
            "storage": str(tmp_path / "sweeps"),
            "optuna": {"storage": f"sqlite:///{tmp_path}/optuna.db", "seed": 0},
            "mlflow": {"tracking_uri": authed, "experiment": "secretive"},
        }
        cfg_path = tmp_path / "secretive.yaml"
        cfg_path.write_text(yaml.safe_dump(d))
        env = {**ray_env(tmp_path), **secrets, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(cfg_path)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600, start_new_session=True)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-6000:]
        items, n_runs = everything_mlflow_holds(server, tmp_path / "downloads")

    # The sweep really logged through the URI that carried the password: sweep, group and seed runs exist,
    # and the config's tracking URI is a param, without its userinfo.
    assert n_runs == 3, [w for w, _ in items]
    params = next(data for where, data in items if where.endswith("params") and b"mlflow.tracking_uri" in data)
    assert repr(server).encode() in params
    assert any("sweep_config.yaml" in where for where, _ in items)
    # Positive control: the password did reach the sweep's own files (sweep.yaml keeps the config as given,
    # which is why docs/cluster.md says to keep credentials in the environment), so the scan below can fail.
    assert uri_password in (tmp_path / "sweeps" / "secretive" / "sweep.yaml").read_text()

    params_all = b"".join(data for where, data in items if where.endswith("params"))
    assert b"script.env.OMP_NUM_THREADS" in params_all  # the script section was logged, its secrets dropped
    leaks = [(name, where) for name, value in [*secrets.items(), *in_config.items(), ("URI password", uri_password)]
             for where, data in [*items, ("driver output", output.encode())] if value.encode() in data]
    assert leaks == []
