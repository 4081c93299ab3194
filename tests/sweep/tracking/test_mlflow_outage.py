"""A real `mlflow server` stopped in the middle of a sweep and started again on the same store and port, twice:
the groups go on training, the sweep's writes are held back while the server is down (and kept on disk, so a
driver killed during the second outage leaves them to `sweep resume`), and the store ends with every step of
every group and seed run exactly once. Real Ray Tune, real MLflow server, the simulator backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from servers import free_port, mlflow_server  # noqa: E402
from test_sweep_run_helpers import end_session, ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def tune_steps(sweep_dir: Path) -> dict[str, list[int]]:
    """Trial id -> the steps of every result Tune recorded."""
    out: dict[str, list[int]] = {}
    for f in (sweep_dir / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = [r["step"] for r in rows]
    return out


def count(sweep_dir: Path) -> int:
    return sum(len(v) for v in tune_steps(sweep_dir).values())


def logged_steps(uri: str) -> int:
    """How many val_loss points the group runs of the sweep hold in the store."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("outage")
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'group'", max_results=1000)
    return sum(len(client.get_metric_history(r.info.run_id, "val_loss")) for r in runs)


def wait_for(what: str, ready, driver: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert driver.poll() is None, f"the driver ended before {what}:\n" + log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + log.read_text()[-5000:]
        time.sleep(0.2)


@pytest.mark.ray
@pytest.mark.slow
def test_tracking_server_outages_mid_sweep_even_one_the_driver_dies_in_lose_and_duplicate_nothing(
        tmp_path: Path) -> None:
    # Two outages of a real tracking server. In the first the driver lives: its writes are held back and made
    # when the server is back. In the second the driver is SIGKILLed while writes are held back: they are on
    # disk (mlflow_pending.json), and `sweep resume` makes them. The store must end with every step of every
    # group and seed run exactly once and every run in its right end state.
    root, port = tmp_path / "mlflow", free_port()
    storage = tmp_path / "sweeps"
    sweep_dir, pending = storage / "outage", storage / "outage" / "mlflow_pending.json"
    log_path = tmp_path / "driver.log"
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    with mlflow_server(root, port=port) as uri:
        cfg = {
            "name": "outage",
            # 1 s of simulated work per eval and seed: the sweep runs for over a minute, the outages fit in it.
            "simulator": {"total_steps": 2000, "eval_interval": 250, "step_delay_s": 0.004},
            "search_space": "wsd", "baselines": ["wsd_sqrt"], "seeds": [0, 1], "budget": 5,
            "scheduler": {"enabled": False}, "resources": {"cpus_per_worker": 0.25}, "max_concurrent_trials": 2,
            "storage": str(storage), "mlflow": {"tracking_uri": uri},
        }
        (tmp_path / "outage.yaml").write_text(yaml.safe_dump(cfg))
        log = open(log_path, "w")
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(tmp_path / "outage.yaml")],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("3 results", lambda: count(sweep_dir) >= 3, driver, log_path)
    try:
        # Outage 1 (the context stopped the server): training goes on, the writes wait for the server.
        down_at = count(sweep_dir)
        time.sleep(10)
        assert count(sweep_dir) > down_at, "training stopped while the tracking server was down"
        with mlflow_server(root, port=port):
            wait_for("the held-back writes", lambda: "every held-back write is done" in log_path.read_text(),
                     driver, log_path, timeout_s=120)
            assert logged_steps(uri) >= count(sweep_dir) - 2  # caught up (a result or two may be in flight)
        # Outage 2: the driver dies while it holds writes back.
        wait_for("writes held back on disk", lambda: pending.exists() and len(json.loads(pending.read_text())) >= 3,
                 driver, log_path)
        end_session(driver.pid)
        driver.wait()
        held = len(json.loads(pending.read_text()))
        with mlflow_server(root, port=port):
            resume = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "outage", "--storage", str(storage)],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                                    start_new_session=True)
            assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-5000:]
            assert f"{held} MLflow writes held back by an earlier start" in resume.stdout + resume.stderr
            assert json.loads(pending.read_text()) == []
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id], max_results=1000)
            steps = tune_steps(sweep_dir)
            groups = {r.data.tags["schedsweep.group"]: r for r in runs if r.data.tags.get("schedsweep.kind") == "group"}
            seeds = [r for r in runs if r.data.tags.get("schedsweep.kind") == "seed"]
            assert len(steps) == 6 and set(groups) == set(steps) and len(seeds) == 2 * len(steps)
            for gid, run in groups.items():
                logged = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
                # Tune's own log may repeat steps across the kill (a group resumes from its last checkpoint).
                assert sorted(logged) == sorted(set(steps[gid])), (gid, logged, steps[gid])  # each step once
                assert run.data.tags["schedsweep.status"] == "finished" and run.info.status == "FINISHED"
            for run in seeds:
                logged = Counter(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
                assert sorted(logged) == list(range(250, 2001, 250)) and set(logged.values()) == {1}
                assert run.info.status == "FINISHED"
    finally:
        log.close()
        end_session(driver.pid)
    text = log_path.read_text()
    assert "holding writes back" in text and "every held-back write is done" in text, text[-4000:]
