"""The fault the issue measured on a `script:` sweep, made to happen on purpose: one seed runs far ahead of the
other (a group result needs every seed, so the group has sent only the slow seed's steps), the driver is
SIGKILLed, and `sweep resume` must still bring every eval step of both seeds to MLflow, once, and decide the
rungs in between. Before the report history, the fast seed restarted from its latest checkpoint and the steps
between the group's last result and that checkpoint were lost for good (MLflow history 0, 25, 100).

Real Ray Tune and Train (one worker per seed run), real Optuna (sqlite), MLflow on sqlite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_resume import seed_checkpoints  # noqa: E402
from test_seed_groups import check_group_results, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env, resumed_seed_runs, run_and_kill_when  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
HORIZON, EVERY = 24, 4

# Seed 1 takes 20x longer per step than seed 0; each eval is reported with a checkpoint (the step it is at).
SCRIPT = r'''
import sys, time
from pathlib import Path
from trainable import hook

seed = hook.seed()
resume = hook.resume_checkpoint()
start = int(Path(resume, "state.txt").read_text()) if resume else 0
out = Path(sys.argv[1])
for step in range(start + 1, hook.horizon_steps() + 1):
    time.sleep(1.0 if seed == 1 else 0.05)
    if step % 4 == 0:
        ckpt = out / f"s{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "state.txt").write_text(str(step))
        hook.report(step=step, val_loss=5.0 - step / 10 + seed / 100, train_loss=5.0 - step / 10,
                    lr=hook.lr_multiplier(step), checkpoint=str(ckpt))
'''


@pytest.mark.ray
@pytest.mark.slow
def test_a_script_group_killed_with_one_seed_far_ahead_loses_no_step(tmp_path: Path) -> None:
    script = tmp_path / "uneven.py"
    script.write_text(SCRIPT)
    cfg = {
        "name": "uneven",
        "script": {"path": str(script), "horizon_steps": HORIZON, "args": ["{run_dir}/ckpt"], "timeout_s": 120},
        "search_space": "wsd", "baselines": ["constant"], "seeds": [0, 1], "budget": 1,
        "scheduler": {"grace_period": 8, "reduction_factor": 2},
        "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_concurrent_trials": 1,
        "storage": str(tmp_path / "sweeps"),
        "optuna": {"storage": f"sqlite:///{tmp_path}/optuna.db", "seed": 0},
    }
    (tmp_path / "uneven.yaml").write_text(yaml.safe_dump(cfg))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    sweep_dir = tmp_path / "sweeps" / "uneven"
    ahead: list[str] = []

    def seed0_ahead() -> bool:
        runs = seed_checkpoints(sweep_dir / "train")
        ahead[:] = [n[:-len("-seed0")] for n, step in runs.items() if n.endswith("-seed0") and step >= 16]
        # Seed 0 checkpointed step 16 or later while seed 1 is at step 4 at most: the group has sent step 4
        # at most, and seed 0 will restart past steps it has already reported.
        return bool(ahead) and runs.get(f"{ahead[0]}-seed1", 0) <= EVERY

    run_and_kill_when(["run", str(tmp_path / "uneven.yaml")], tmp_path, env, tmp_path / "first.log", seed0_ahead,
                      timeout_s=300, poll_s=0.05, what="seed 0 two checkpoints ahead of seed 1")
    group = ahead[0]

    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "uneven", "--storage",
                           str(tmp_path / "sweeps")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # The fast seed restarted past step 8 at least, which the group had not formed (its latest registered
    # checkpoint: usually the step-16 one seen on disk, older if the kill came between upload and registration).
    assert resumed_seed_runs(env).get(f"{group}-seed0", -1) >= 2 * EVERY

    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 2
    for t in trials:
        check_group_results(t["results"], [0, 1])  # no result sent twice across the kill
    # Every eval step of every seed run, once: the fast seed's steps between the group's last result and its
    # checkpoint were said again after the restore.
    check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "uneven", "uneven", seeds=[0, 1],
                       groups=[t["id"] for t in trials], eval_every=EVERY)
    # And ASHA decided the rung at step 8 for the interrupted group on its step-8 result (formed after the
    # restore; without it ASHA recorded the group at rung 8 with a later step's value).
    client = MlflowClient(f"sqlite:///{sweep_dir}/mlflow.db")
    exp = client.get_experiment_by_name("uneven")
    (run,) = client.search_runs([exp.experiment_id], f"tags.`schedsweep.group` = '{group}' AND "
                                "tags.`schedsweep.kind` = 'group'")
    at_8 = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "rung_loss")}[8]
    rungs = {m: rec for m, rec in json.loads((sweep_dir / "asha_state.json").read_text())["rungs"]}
    assert rungs[8][group] == pytest.approx(-at_8), (rungs, at_8)
