"""A real `mlflow server` stopped in the middle of a sweep and started again on the same store and port: the
groups go on training, the sweep's writes are held back while the server is down, and the store ends with
every step of every group and seed run exactly once. Real Ray Tune, real MLflow server, the simulator backend.
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

sys.path.insert(0, str(Path(__file__).parent))
from servers import free_port, mlflow_server  # noqa: E402
from test_sweep_run_helpers import end_session, ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tune_steps(sweep_dir: Path) -> dict[str, list[int]]:
    """Trial id -> the steps of every result Tune recorded."""
    out: dict[str, list[int]] = {}
    for f in (sweep_dir / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = [r["step"] for r in rows]
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_tracking_server_outage_mid_sweep_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root, port = tmp_path / "mlflow", free_port()
    storage = tmp_path / "sweeps"
    with mlflow_server(root, port=port) as uri:
        cfg = {
            "name": "outage",
            # 1 s of simulated work per eval and seed: the sweep runs for a minute, the outage lasts ~15 s of it.
            "simulator": {"total_steps": 2000, "eval_interval": 250, "step_delay_s": 0.004},
            "search_space": "wsd", "baselines": ["wsd_sqrt"], "seeds": [0, 1], "budget": 3,
            "scheduler": {"enabled": False}, "resources": {"cpus_per_worker": 0.25}, "max_concurrent_trials": 2,
            "storage": str(storage), "mlflow": {"tracking_uri": uri},
        }
        (tmp_path / "outage.yaml").write_text(yaml.safe_dump(cfg))
        log = open(tmp_path / "driver.log", "w")
        env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(tmp_path / "outage.yaml")],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while sum(len(v) for v in tune_steps(storage / "outage").values()) < 3:
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()[-5000:]
            time.sleep(0.2)
    # The server is down now (the context stopped it).
    try:
        down_at = sum(len(v) for v in tune_steps(storage / "outage").values())
        time.sleep(15)
        during = sum(len(v) for v in tune_steps(storage / "outage").values())
        assert during > down_at, "training stopped while the tracking server was down"
        with mlflow_server(root, port=port):
            assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-6000:]
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id], max_results=1000)
            steps = tune_steps(storage / "outage")
            groups = {r.data.tags["schedsweep.group"]: r for r in runs if r.data.tags.get("schedsweep.kind") == "group"}
            seeds = [r for r in runs if r.data.tags.get("schedsweep.kind") == "seed"]
            assert set(groups) == set(steps) and len(seeds) == 2 * len(steps)
            for gid, run in groups.items():
                logged = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
                assert sorted(logged) == sorted(set(steps[gid])), (gid, logged, steps[gid])  # each step once
                assert run.data.tags["schedsweep.status"] == "finished" and run.info.status == "FINISHED"
            for run in seeds:
                logged = Counter(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
                assert sorted(logged) == list(range(250, 2001, 250)) and set(logged.values()) == {1}
    finally:
        log.close()
        end_session(driver.pid)
    text = (tmp_path / "driver.log").read_text()
    assert "holding writes back" in text and "every held-back write is done" in text, text[-4000:]
