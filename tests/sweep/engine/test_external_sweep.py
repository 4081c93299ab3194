"""Sweeping the example nanoGPT-style script (`script:` backend) with seed groups and ASHA on real Ray
(2 gloo DDP workers per seed run, launched torchrun-style by `trainable.external`), real Optuna and MLflow.

The MLflow runs must look like the built-in trainer's: the same run kinds and nesting (check_sweep_layout),
the same params on group and seed runs, and the metric keys a CPU run of the built-in trainer logs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from search_spaces import schedule_from_dict
from sweep.tracking.params import schedule_params
from sweep.tracking.tags import GROUP_METRICS, SEED_METRICS, TAG_GROUP
from trainable.report_history import HISTORY_FILE

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_seed_groups import check_group_results, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "nanogpt_style" / "train.py"
HORIZON = 24
# What only a GPU run of the built-in trainer adds (model FLOPs utilisation).
GPU_ONLY = {"mfu"}


def example_sweep(tmp: Path, name: str) -> dict:
    return {
        "name": name,
        "script": {
            "path": str(EXAMPLE),
            "horizon_steps": HORIZON,
            "args": ["--max-iters", "{horizon_steps}", "--eval-interval", "4", "--seed", "{seed}",
                     "--out-dir", "{run_dir}/out", "--batch-size", "4"],
            "env": {"OMP_NUM_THREADS": "1"},
            "timeout_s": 120,
        },
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine"],
        "seeds": [0, 1],
        "budget": 1,
        "scheduler": {"grace_period": 4, "reduction_factor": 2},
        "resources": {"workers": 2, "cpus_per_worker": 0.5},
        "storage": str(tmp / "sweeps"),
        "optuna": {"storage": f"sqlite:///{tmp}/optuna.db", "seed": 0},
    }


def run_sweep_cli(tmp: Path, cfg: dict) -> subprocess.CompletedProcess:
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path)], cwd=tmp,
                          env={**ray_env(tmp), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_example_script_sweep_looks_like_the_built_in_trainers(tmp_path: Path) -> None:
    cfg = example_sweep(tmp_path, "ext")
    proc = run_sweep_cli(tmp_path, cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    sweep_dir = tmp_path / "sweeps" / "ext"
    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 2
    for t in trials:
        check_group_results(t["results"], [0, 1])
        shape = schedule_from_dict(t["config"]["schedule"])
        for r in t["results"]:
            # The script took its LR from the group's shape through the hook (mean over seeds of equal values).
            assert r["lr_multiplier"] == pytest.approx(shape.multiplier(min(r["step"], HORIZON - 1), HORIZON))
            assert r["tokens"] == r["step"] * 4 * 32 * 2  # batch x block x ranks, as the script reported
            assert r["val_bpb"] == pytest.approx(r["val_loss"] / math.log(2))
        last = t["results"][-1]
        if last["status"] == "finished":
            assert last["step"] == HORIZON
        # No check that a stopped group's seeds ended before the horizon: a seed that started first runs
        # ahead of the group's slowest one (a group result needs every seed), and at 24 tiny steps it can
        # finish before ASHA has seen the group's first result (seen once in three runs).
        # Checkpoints the script reported through the hook became the seed runs' Ray Train checkpoints.
        for seed in (0, 1):
            ckpts = sorted((sweep_dir / "train" / f"{t['id']}-seed{seed}").glob("step_*"))
            assert ckpts, (t["id"], seed)
            saved = json.loads((ckpts[-1] / HISTORY_FILE).read_text())  # every report up to this checkpoint
            assert (ckpts[-1] / "ckpt.pt").exists() and int(ckpts[-1].name.split("_")[1]) == saved[-1]["step"]
            steps = [r["step"] for r in saved]  # every eval (each 4 steps) from the first one on
            assert steps == list(range(steps[0], steps[-1] + 1, 4)) and steps[0] <= 4, steps
    seeds = [0, 1]
    assert {t["results"][-1]["status"] for t in trials} <= {"finished", "running"}
    assert trials[0]["results"][-1]["status"] == "finished"  # the baseline runs first and is never stopped

    kinds = check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "ext", "ext", seeds,
                               groups=[t["id"] for t in trials])
    client = MlflowClient(f"sqlite:///{sweep_dir}/mlflow.db")
    by_id = {t["id"]: t for t in trials}
    # Cooldown-probe metrics appear only with rung_metric cooldown, which a script cannot do.
    # A script's reports also say whether it read the seed and the schedule through the hook.
    hook_keys = {"seed_read", "schedule_read"}
    builtin_seed_keys = set(SEED_METRICS) - GPU_ONLY - {"val_loss_cooldown", "probe_steps_run"} - hook_keys
    builtin_group_step_keys = set(GROUP_METRICS) - GPU_ONLY
    for group in kinds["group"]:
        t = by_id[group.data.tags[TAG_GROUP]]
        params = group.data.params
        assert {k: params[k] for k in schedule_params(t["config"]["schedule"])} == {
            k: str(v) for k, v in schedule_params(t["config"]["schedule"]).items()}
        assert {"group_id", "baseline", "seeds"} <= set(params)
        keys = set(group.data.metrics)
        assert builtin_group_step_keys <= keys and "final_val_loss_mean" in keys and "final_val_bpb_mean" in keys
        assert keys - builtin_group_step_keys == {k for k in keys if k.startswith("final_")}
    for run in kinds["seed"]:
        assert set(run.data.metrics) == builtin_seed_keys | hook_keys, sorted(run.data.metrics)
        assert run.data.metrics["seed_read"] == 1.0 and run.data.metrics["schedule_read"] == 1.0
        group_params = next(g for g in kinds["group"] if g.data.tags[TAG_GROUP] == run.data.tags[TAG_GROUP]).data.params
        shared = set(group_params) & set(run.data.params)
        assert {"seed", "group_id", "baseline"} <= set(run.data.params) and {"group_id", "baseline"} <= shared
        assert all(run.data.params[k] == group_params[k] for k in shared)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps[0] == 4 and all(s % 4 == 0 for s in steps)


def test_the_example_sweep_config_is_valid_from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.config import SweepConfig

    monkeypatch.chdir(REPO)
    cfg = SweepConfig.from_dict(yaml.safe_load((EXAMPLE.parent / "sweep.yaml").read_text()))
    assert cfg.backend == "script" and Path(cfg.script.path) == EXAMPLE and cfg.max_step() == 200
    assert "{seed}" in cfg.script.args and "{run_dir}/out" in cfg.script.args
