"""`sweep run` submitted with `ray job submit` to a real Ray head, logging to a real `mlflow server`.

The end-to-end path of a cluster user: `ray start --head` (dashboard on, token auth on with the test's
own token), `ray job submit --working-dir <repo> -- python -m sweep.cli run tiny.yaml`, wait for
SUCCEEDED, then read the sweep back from MLflow: sweep -> group -> seed runs, step metrics at our steps,
seed statistics and end states, the same layout as the Tune-fixture tests but from the real group trial.
The head and the MLflow server are stopped afterwards, also on failure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from servers import venv_bin, mlflow_server, ray_head
from sweep.mlflow_tracking import TAG_GROUP, TAG_KIND, TAG_PARENT, TAG_SEED, TAG_STATUS, TAG_SWEEP, groups_from_mlflow
from sweep.progress import leaderboard
from test_sweep_run_helpers import tiny_sweep

pytestmark = [pytest.mark.ray, pytest.mark.ddp, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EVAL_STEPS = [4, 8, 12]  # tiny_sweep: 12 steps, eval every 4


def _ray(head, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("ray"), *args], env=head.env, capture_output=True, text=True, timeout=timeout)


def test_sweep_run_submitted_as_ray_job(tmp_path):
    with mlflow_server(tmp_path / "mlflow") as uri, ray_head(tmp_path / "head") as head:
        cfg = tiny_sweep(tmp_path, name="jobsweep", budget=1, mlflow={"tracking_uri": uri, "experiment": "jobs"})
        cfg_path = tmp_path / "tiny.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        job_id = f"schedsweep-{uuid.uuid4().hex[:8]}"
        runtime_env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"},
                       "excludes": [".venv", ".git", "sweeps", "mlruns"]}
        submit = _ray(head, "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
                      "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env),
                      "--", sys.executable, "-m", "sweep.cli", "run", str(cfg_path), timeout=480)
        logs = submit.stdout + submit.stderr
        status = _ray(head, "job", "status", "--address", head.dashboard_url, job_id)
        assert "SUCCEEDED" in status.stdout + status.stderr or "succeeded" in status.stdout + status.stderr, logs[-4000:]
        assert submit.returncode == 0, logs[-4000:]
        # The driver's own output went through the job: live progress and the closing summary.
        assert "[sweep " in logs and "sweep 'jobsweep': 2 groups (0 errored)" in logs

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("jobs")
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = 'jobsweep'")
        kinds = {k: [r for r in runs if r.data.tags[TAG_KIND] == k] for k in ("sweep", "group", "seed")}
        assert len(kinds["sweep"]) == 1 and len(kinds["group"]) == 2 and len(kinds["seed"]) == 4
        sweep_run = kinds["sweep"][0]
        assert sweep_run.info.status == "FINISHED"
        assert sweep_run.data.tags["schedsweep.seeds"] == "0,1"
        labels = sorted(r.data.tags["schedsweep.label"] for r in kinds["group"])
        assert labels == ["constant", "search"]

        for group in kinds["group"]:
            gid = group.data.tags[TAG_GROUP]
            state = group.data.tags[TAG_STATUS]
            assert group.data.tags[TAG_PARENT] == sweep_run.info.run_id
            assert (state, group.info.status) in {("finished", "FINISHED"), ("pruned", "KILLED")}
            assert "schedule.png" in {a.path for a in client.list_artifacts(group.info.run_id)}
            seeds = [r for r in kinds["seed"] if r.data.tags[TAG_GROUP] == gid]
            assert sorted(r.data.tags[TAG_SEED] for r in seeds) == ["0", "1"]
            finals = []
            for srun in seeds:
                assert srun.data.tags[TAG_PARENT] == group.info.run_id
                assert srun.info.status == group.info.status
                steps = [m.step for m in client.get_metric_history(srun.info.run_id, "val_loss")]
                # Each eval logged once, at MLflow step = the optimizer step; a pruned group stops early.
                assert steps == EVAL_STEPS[:len(steps)] and steps
                if state == "finished":
                    assert steps == EVAL_STEPS
                assert {"train_loss", "val_bpb", "lr", "tokens_per_s"} <= set(srun.data.metrics)
                finals.append(srun.data.metrics["val_loss"])
            assert group.data.metrics["final_val_loss_mean"] == pytest.approx(statistics.fmean(finals), rel=1e-12)
            assert group.data.metrics["final_val_loss_std"] == pytest.approx(statistics.stdev(finals), rel=1e-9)

        board = leaderboard(groups_from_mlflow(uri, "jobs", "jobsweep"))
        finished = sum(g.data.tags[TAG_STATUS] == "finished" for g in kinds["group"])
        assert f"{finished} finished of 2 groups" in board
