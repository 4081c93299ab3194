"""A sweep whose storage is a shared mount, not the driver's working folder: kill the driver, resume it
from another working folder, and check that everything lived on the mount.

On a cluster the sweep folder sits on a shared volume (a PVC at /shared, EFS, NFS) while the driver runs
in whatever folder Ray gives the job (`ray job submit --working-dir` unpacks it somewhere new for every
job), and a head node lost mid-sweep comes back as a new driver in a new folder. Here: the storage is
`<tmp>/mnt/shared/sweeps`, the first driver runs in `<tmp>/job1` and is SIGKILLed once the first group has
a checkpoint, and `sweep resume NAME --storage <mount>` runs in `<tmp>/job2`. Real Ray, real DDP (gloo),
real Optuna on sqlite, real MLflow (sqlite in the sweep folder, i.e. on the mount).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_resume import checkpointed_runs, split_runs  # noqa: E402
from test_seed_groups import check_group_results, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env, tiny_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HORIZON = 160


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_sweep_on_a_shared_mount_resumes_from_another_working_folder(tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "shared"
    job1, job2 = tmp_path / "job1", tmp_path / "job2"
    for folder in (mount, job1, job2):
        folder.mkdir(parents=True)
    d = tiny_sweep(tmp_path, name="shared", budget=1, seeds=[0])
    d["trainer"]["horizon"] = {"steps": HORIZON}
    d["trainer"]["eval"] = {"interval": 20, "max_tokens": 1024}
    d["scheduler"] = {"grace_period": 40, "reduction_factor": 2}
    d["resources"] = {"workers": 2, "cpus_per_worker": 0.5}
    d["storage"] = str(mount / "sweeps")
    d["optuna"] = {"storage": f"sqlite:///{mount}/optuna.db", "seed": 0}
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump(d))
    sweep_dir = mount / "sweeps" / "shared"
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}

    log = open(tmp_path / "job1.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(config)], cwd=job1, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            runs = checkpointed_runs(sweep_dir / "train")
            if runs and min(runs.values()) < HORIZON:  # the baseline group is mid-way: lose the "head"
                break
            assert driver.poll() is None, (tmp_path / "job1.log").read_text()[-5000:]
            time.sleep(0.2)
        else:
            pytest.fail("no group checkpointed in time")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        time.sleep(1)
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # what the killed driver's Ray left behind
        except ProcessLookupError:
            pass
        log.close()
    before = checkpointed_runs(sweep_dir / "train")
    assert (sweep_dir / "sweep.yaml").is_file() and (sweep_dir / "tune").is_dir()

    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "shared", "--storage", str(mount / "sweeps")],
                          cwd=job2, env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # The sweep's state is on the mount, none of it in either working folder.
    for job in (job1, job2):
        assert not any(name.endswith((".db", ".pkl", ".json", ".pt", ".yaml")) for name in files_under(job)), \
            sorted(files_under(job))[:20]
    on_mount = files_under(sweep_dir)
    assert {"sweep.yaml", "asha_state.json", "mlflow.db", "tune/tuner.pkl"} <= on_mount
    # MLflow's artifacts too (its default, ./mlruns, would split them over the two working folders).
    assert any(name.startswith("mlartifacts/") and name.endswith("sweep_config.yaml") for name in on_mount)

    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 2 and [t["config"]["baseline"] for t in trials].count("constant") == 1
    for t in trials:
        check_group_results(t["results"], [0])
    interrupted = [t for t in trials if t["id"] in before]
    assert len(interrupted) == 1 and interrupted[0]["config"]["baseline"] == "constant", before
    resumed = split_runs(interrupted[0]["results"])[-1]
    assert resumed[0]["step"] > 20, [r["step"] for r in interrupted[0]["results"]]  # from its checkpoint
    assert interrupted[0]["results"][-1]["status"] == "finished"
    # Its seed run kept writing checkpoints in the same run folder on the mount, up to the horizon.
    after = checkpointed_runs(sweep_dir / "train")
    assert after[interrupted[0]["id"]] == HORIZON
    check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "shared", "shared", seeds=[0], groups=[t["id"] for t in trials])
