"""A Train worker SIGKILLed in the middle of a seed run: the run restarts from its last checkpoint
(`resources.max_failures`), ends with exactly the loss curve of an uninterrupted run (CPU, same seed), and its
group is COMPLETE in Optuna. Real Ray, real DDP (2 gloo ranks), real Optuna (sqlite).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import end_session, ray_env, tiny_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def config(tmp: Path, name: str) -> dict:
    d = tiny_sweep(tmp, name=name, baselines=[], budget=1, seeds=[0], scheduler={"enabled": False},
                   optuna={"storage": f"sqlite:///{tmp}/{name}.db", "seed": 0})
    d["trainer"] = {**d["trainer"], "horizon": {"steps": 40}, "eval": {"interval": 4, "max_tokens": 1024},
                    "checkpoint": {"every": 1, "keep": 2}}
    d["resources"] = {"workers": 2, "cpus_per_worker": 0.5, "max_failures": 2}
    return d


def group_results(sweep_dir: Path) -> list[dict]:
    (f,) = list((sweep_dir / "tune").glob("*/result.json"))
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def train_workers(session: int) -> list[int]:
    """PIDs of Ray Train worker processes started by the driver of `session`."""
    out = subprocess.run(["ps", "-eo", "pid=,sess=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, sess, args = line.split(None, 2)
        if int(sess) == session and "RayTrainWorker" in args:
            pids.append(int(pid))
    return pids


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_a_killed_worker_restarts_from_its_checkpoint_and_changes_nothing(tmp_path: Path) -> None:
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    storage = tmp_path / "sweeps"
    for name in ("faulty", "clean"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config(tmp_path, name)))

    log = open(tmp_path / "faulty.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(tmp_path / "faulty.yaml")], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    killed = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and driver.poll() is None:
            # Once the seed run has a checkpoint (after its second eval), kill one of its two workers.
            if killed is None and len(list((storage / "faulty" / "train").glob("*/step_*"))) >= 2:
                workers = train_workers(driver.pid)
                if workers:
                    killed = workers[-1]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        assert driver.wait(timeout=600) == 0, (tmp_path / "faulty.log").read_text()[-6000:]
    finally:
        log.close()
        end_session(driver.pid)
    assert killed is not None, "no Train worker was found to kill"
    # Ray Train's failure policy restarted the run. Its controller says so in Ray's worker logs, which the
    # sweep no longer forwards to the terminal (--verbose would).
    logs = sorted(Path(env["RAY_TMPDIR"]).glob("ray/session_*/logs/worker-*"))
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert "RETRY" in text, (tmp_path / "faulty.log").read_text()[-6000:]

    clean = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(tmp_path / "clean.yaml")], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-5000:]

    faulty, uninterrupted = group_results(storage / "faulty"), group_results(storage / "clean")
    assert faulty[-1]["status"] == "finished" and faulty[-1]["step"] == 40
    curve = {r["step"]: r["val_loss"] for r in uninterrupted}
    assert [r["step"] for r in uninterrupted] == list(range(4, 41, 4))
    for r in faulty:  # a step reported before the kill may come again after the restart, identically
        assert r["val_loss"] == curve[r["step"]], (r["step"], r["val_loss"], curve[r["step"]])
    assert sorted({r["step"] for r in faulty}) == list(range(4, 41, 4))
    for name in ("faulty", "clean"):
        (trial,) = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/{name}.db").get_trials()
        assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == faulty[-1]["val_loss"]
