"""`sweep dashboard NAME`: a real MLflow server and a real optuna-dashboard on a sweep's stores, stopped by
Ctrl-C (SIGINT), as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from test_report import Group, write_sweep

REPO = Path(__file__).resolve().parents[3]


def _read_until(proc: subprocess.Popen, marker: str, timeout_s: float) -> str:
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError(f"no {marker!r} in: {''.join(out)} / {proc.stderr.read() if proc.poll() is not None else ''}")


def _get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dashboard_serves_the_sweeps_mlflow_experiment_and_optuna_study_until_ctrl_c(tmp_path):
    study_uri = f"sqlite:///{tmp_path / 'study.db'}"
    write_sweep(tmp_path, "dash", [Group("b1", [3.0, 3.1, 3.2], baseline="wsd_sqrt", schedule={"preset": "wsd_sqrt"}),
                                   Group("s", [2.9, 3.0, 3.1])], 3, optuna={"storage": study_uri, "seed": 0})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="dash", storage=study_uri)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=3.0))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, state=optuna.trial.TrialState.PRUNED))

    bin_dir = str(Path(sys.executable).parent)  # optuna-dashboard's console script lives next to python
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "sweep.cli", "dashboard", "dash", "--storage", str(tmp_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _read_until(proc, "Ctrl-C stops them.", 180)
        urls = dict(re.findall(r"^\s+(MLflow|Optuna)\s*: (http://127\.0\.0\.1:\d+)$", out, re.M))
        assert set(urls) == {"MLflow", "Optuna"}, out
        exp = _get_json(f"{urls['MLflow']}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=dash")
        tags = {t["key"]: t["value"] for t in exp["experiment"].get("tags", [])}
        assert tags.get("mlflow.experimentKind") == "custom_model_development"
        runs = _get_json(f"{urls['MLflow']}/ajax-api/2.0/mlflow/runs/search",
                         {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100})
        assert len(runs["runs"]) == 1 + 2 + 2 * 3  # the sweep run, 2 groups, 3 seeds each
        studies = _get_json(f"{urls['Optuna']}/api/studies")
        assert [s["study_name"] for s in studies["study_summaries"]] == ["dash"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        for url in urls.values():  # both servers are gone with it
            port = int(url.rsplit(":", 1)[1])
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dashboard_of_a_missing_sweep_is_one_error_and_exit_2(tmp_path, capsys):
    from sweep.cli import main

    assert main(["dashboard", "nope", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweep: error: name: ") and len(err.strip().splitlines()) == 1
