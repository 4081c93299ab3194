"""Kill the sweep driver mid-sweep, `sweep resume`, and check that nothing was lost or duplicated.

Real Ray, real DDP (2 gloo workers per seed run), real Optuna (sqlite, so the study can be read here) and
ASHA. The driver is SIGKILLed once the first group (the baseline) has written a checkpoint; the resumed sweep
must finish that group from its checkpoints, not emit the baseline again, and ask Optuna for exactly the
budgeted shapes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_seed_groups import check_group_results, ckpt_steps, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env, resumed_seed_runs, run_and_kill_when, tiny_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TrialState = optuna.trial.TrialState


def seed_checkpoints(train_dir: Path) -> dict[str, int]:
    """Seed run name -> its highest checkpointed step (runs with a checkpoint only)."""
    out: dict[str, int] = {}
    for run in train_dir.glob("*-seed*") if train_dir.exists() else []:
        steps = [int(p.name.split("_")[1]) for p in run.glob("step_*")]
        if steps:
            out[run.name] = max(steps)
    return out


def checkpointed_runs(train_dir: Path) -> dict[str, int]:
    """Trial id -> the highest checkpointed step over its seed runs."""
    out: dict[str, int] = {}
    for name, step in seed_checkpoints(train_dir).items():
        trial = name.rsplit("-seed", 1)[0]
        out[trial] = max(out.get(trial, 0), step)
    return out


def split_runs(results: list[dict]) -> list[list[dict]]:
    """A trial's results split where `training_iteration` restarts (Tune restarts it after a restore)."""
    runs: list[list[dict]] = []
    for r in results:
        if not runs or r["training_iteration"] <= runs[-1][-1]["training_iteration"]:
            runs.append([])
        runs[-1].append(r)
    return runs


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_duplicating(tmp_path: Path) -> None:
    d = tiny_sweep(tmp_path, name="resumable", budget=2)
    d["trainer"]["horizon"] = {"steps": 120}
    d["trainer"]["eval"] = {"interval": 20, "max_tokens": 1024}
    d["scheduler"] = {"grace_period": 20, "reduction_factor": 2}
    path = tmp_path / "resumable.yaml"
    path.write_text(yaml.safe_dump(d))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    sweep_dir = tmp_path / "sweeps" / "resumable"

    def mid_group() -> bool:
        # The baseline group runs first and ASHA never stops the first group: kill it mid-way.
        runs = checkpointed_runs(sweep_dir / "train")
        return bool(runs) and min(runs.values()) < 120

    run_and_kill_when(["run", str(path)], tmp_path, env, tmp_path / "first.log", mid_group, what="a checkpoint")
    before = checkpointed_runs(sweep_dir / "train")
    before_runs = seed_checkpoints(sweep_dir / "train")

    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "resumable", "--storage",
                           str(tmp_path / "sweeps")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    trials = read_trials(sweep_dir / "tune")
    ids = [t["id"] for t in trials]
    assert len(trials) == 3 and len(set(ids)) == 3  # baseline + budget 2, each once
    assert [t["config"]["baseline"] for t in trials].count("constant") == 1
    for t in trials:
        check_group_results(t["results"], [0, 1])  # steps increase across the restore too

    # The group interrupted mid-way continued from its checkpoints, not from step 0 ...
    interrupted = [t for t in trials if t["id"] in before]
    assert len(interrupted) == 1 and interrupted[0]["config"]["baseline"] == "constant", before
    # Ray Train resumes a run from its latest *registered* checkpoint, which can be older than the newest
    # checkpoint folder on disk (a kill between the upload and the registration): check only that the group's
    # seed runs went on from checkpoints they had written, not from step 0.
    resumed = resumed_seed_runs(env)
    runs = [name for name in before_runs if name.startswith(interrupted[0]["id"] + "-seed")]
    assert any(run in resumed for run in runs), (runs, resumed)
    for run in set(runs) & set(resumed):
        assert resumed[run] in ckpt_steps(sweep_dir / "train" / run), (run, resumed[run])
    # ... and no result of it went to Tune twice: results sent before the kill are not sent again (steps
    # strictly increase across the restore; check_group_results above), those a seed reported before its
    # checkpoint are said again, so no eval step is missing from MLflow (check_sweep_layout below).

    # Optuna: one trial per TPE group, none left RUNNING, the truth about each.
    study = optuna.load_study(study_name="resumable", storage=d["optuna"]["storage"])
    ot = sorted(study.get_trials(), key=lambda o: o.number)
    searched = [t for t in trials if t["config"]["baseline"] is None]
    assert len(ot) == 2 and len(searched) == 2
    for t, o in zip(searched, ot):
        last = t["results"][-1]
        assert o.params["warmup_frac"] == pytest.approx(t["config"]["schedule"]["warmup_frac"])
        assert o.state == (TrialState.COMPLETE if last["status"] == "finished" else TrialState.PRUNED)

    # ASHA's rungs survived the kill: groups that reported before it are still recorded.
    rungs = json.loads((sweep_dir / "asha_state.json").read_text())["rungs"]
    recorded = {tid for _, rec in rungs for tid in rec}
    assert trials[0]["id"] in recorded and set(ids) <= recorded

    # MLflow after the resume: the same sweep/group/seed runs went on (one of each, no duplicates), every
    # step logged once and increasing, end states right (the helper asserts all of it).
    check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "resumable", "resumable", seeds=[0, 1], groups=ids,
                       eval_every=20)
