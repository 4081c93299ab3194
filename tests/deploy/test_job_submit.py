"""`sweep run` submitted with `ray job submit` to a real Ray head, logging to a real `mlflow server`.

The end-to-end path of a cluster user: `ray start --head` (dashboard on, token auth on with the test's
own token), `ray job submit --working-dir <repo> -- python -m sweep.cli run tiny.yaml`, wait for
SUCCEEDED, then read the sweep back from MLflow: sweep -> group -> seed runs, step metrics at our steps,
seed statistics and end states, the same layout as the Tune-fixture tests but from the real group trial.
The head and the MLflow server are stopped afterwards, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from servers import mlflow_server, ray_head, venv_bin
from sweep.tracking.progress import leaderboard
from sweep.tracking.queries import groups_from_mlflow
from sweep.tracking.tags import TAG_GROUP, TAG_STATUS
from test_mlflow_layout import check_sweep_layout
from test_sweep_run_helpers import tiny_sweep

pytestmark = [pytest.mark.ray, pytest.mark.ddp, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EVAL_STEPS = [4, 8, 12]  # tiny_sweep: 12 steps, eval every 4


def _ray(head, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("ray"), *args], env=head.env, capture_output=True, text=True, timeout=timeout)


def _submit_when_ready(head, args: list[str], timeout_s: float = 90) -> None:
    """`ray job submit --no-wait`, retried while the head's job agent is still starting.

    The dashboard answers before the node's agent has registered; until then a submission fails with
    "No available agent to submit job, please try again later".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        out = _ray(head, "job", "submit", "--address", head.dashboard_url, *args)
        text = out.stdout + out.stderr
        if out.returncode == 0:
            return
        if "No available agent" not in text or time.monotonic() > deadline:
            raise AssertionError(f"ray job submit failed:\n{text[-4000:]}")
        time.sleep(2)


def _job_api(head, path: str) -> dict:
    """GET the head's Jobs REST API (with the test's auth token)."""
    request = urllib.request.Request(f"{head.dashboard_url}/api/jobs/{path}",
                                     headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _wait_for_job(head, job_id: str, timeout_s: float) -> dict:
    """Poll the job until it is SUCCEEDED, FAILED or STOPPED; returns its last status record."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _job_api(head, job_id)
        if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return info
        time.sleep(2)
    raise AssertionError(f"job {job_id} still not done after {timeout_s} s")


def _ray_logs_tail(head, patterns: tuple[str, ...] = ("job-driver-*", "runtime_env*", "dashboard_agent*"),
                   chars: int = 1500) -> str:
    """The tails of the head's own log files that explain a job which failed before its driver printed."""
    logs = Path(head.env["RAY_TMPDIR"]) / "ray" / "session_latest" / "logs"
    parts = []
    for pattern in patterns:
        for path in sorted(logs.glob(pattern)):
            text = path.read_text(errors="replace")[-chars:]
            if text.strip():
                parts.append(f"--- {path.name}\n{text}")
    return "\n".join(parts)


def _run_job(head, args: list[str], timeout_s: float) -> tuple[dict, str]:
    """Submit the job and wait for it; returns (status record, driver logs).

    One resubmission, only when Ray failed the job before its driver ran (no driver exit code, no output):
    that is Ray's job supervisor or runtime-env agent on a loaded 2-core machine (CI saw it once, with empty
    logs), never this project's code. A driver that ran and failed is never retried."""
    for attempt in (1, 2):
        job_id = f"schedsweep-{uuid.uuid4().hex[:8]}"
        _submit_when_ready(head, ["--submission-id", job_id, *args])
        info = _wait_for_job(head, job_id, timeout_s)
        logs = _job_api(head, f"{job_id}/logs")["logs"]
        never_ran = info["status"] == "FAILED" and info.get("driver_exit_code") is None and not logs.strip()
        if not never_ran or attempt == 2:
            return info, logs
        print(f"job {job_id} failed before its driver ran ({info.get('message')}); submitting once more\n"
              f"{_ray_logs_tail(head)}")
    raise AssertionError("unreachable")


def test_sweep_run_submitted_as_ray_job(tmp_path):
    with contextlib.ExitStack() as servers:
        # Both servers start at once (each takes 5-20 s here); the stack stops whichever came up, always.
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(servers.enter_context, mlflow_server(tmp_path / "mlflow")),
                       pool.submit(servers.enter_context, ray_head(tmp_path / "head"))]
        uri, head = (f.result() for f in started)
        # One DDP-less worker per seed, so both groups (the baseline and one TPE shape) fit the 2-CPU head at
        # once: the job path is under test here, DDP has its own tests.
        cfg = tiny_sweep(tmp_path, name="jobsweep", budget=1, mlflow={"tracking_uri": uri, "experiment": "jobs"},
                         resources={"workers": 1, "cpus_per_worker": 0.5}, max_concurrent_trials=2)
        cfg_path = tmp_path / "tiny.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        runtime_env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"},
                       "excludes": [".venv", ".git", "sweeps", "mlruns"]}
        submit_args = ["--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--no-wait",
                       "--", sys.executable, "-m", "sweep.cli", "run", str(cfg_path)]
        info, logs = _run_job(head, submit_args, timeout_s=480)
        assert info["status"] == "SUCCEEDED", (
            f"{info.get('message')} (driver exit code {info.get('driver_exit_code')})\n{logs[-4000:]}\n"
            f"{_ray_logs_tail(head)}")
        # The driver's own output went through the job: live progress and the closing summary.
        assert "[sweep " in logs and "sweep 'jobsweep': 2 groups (0 errored)" in logs

        kinds = check_sweep_layout(uri, "jobs", "jobsweep", seeds=[0, 1])
        assert len(kinds["group"]) == 2 and len(kinds["seed"]) == 4
        sweep_run = kinds["sweep"][0]
        assert sweep_run.data.tags["schedsweep.seeds"] == "0,1"
        assert sorted(r.data.tags["schedsweep.label"] for r in kinds["group"]) == ["constant", "search"]
        client = MlflowClient(uri)
        for group in kinds["group"]:
            state = group.data.tags[TAG_STATUS]
            assert state in ("finished", "pruned")
            assert "schedule.png" in {a.path for a in client.list_artifacts(group.info.run_id)}
            for srun in (r for r in kinds["seed"] if r.data.tags[TAG_GROUP] == group.data.tags[TAG_GROUP]):
                steps = [m.step for m in client.get_metric_history(srun.info.run_id, "val_loss")]
                # Each eval logged once, at MLflow step = the optimizer step; a pruned group stops early.
                assert steps == (EVAL_STEPS if state == "finished" else EVAL_STEPS[:len(steps)])
                assert {"train_loss", "val_bpb", "lr", "tokens_per_s"} <= set(srun.data.metrics)

        board = leaderboard(groups_from_mlflow(uri, "jobs", "jobsweep"))
        finished = sum(g.data.tags[TAG_STATUS] == "finished" for g in kinds["group"])
        assert f"{finished} finished of 2 groups" in board
