"""A sweep whose storage is a shared mount, not the driver's working folder: kill the driver, resume it
from another working folder, and check that everything lived on the mount.

On a cluster the sweep folder sits on a shared volume (a PVC at /shared, EFS, NFS) while the driver runs
in whatever folder Ray gives the job (`ray job submit --working-dir` unpacks it somewhere new for every
job), and a head node lost mid-sweep comes back as a new driver in a new folder. Here: the storage is
`<tmp>/mnt/shared/sweeps`, the first driver runs in `<tmp>/job1` and is SIGKILLed once the first group has
a checkpoint, and `sweep resume NAME --storage <mount>` runs in `<tmp>/job2`. Real Ray, real DDP (gloo),
real Optuna on sqlite, real MLflow (sqlite in the sweep folder, i.e. on the mount).

Two sweeps: the simulator backend (fast: many groups, the driver killed between and inside groups, Tune's
own trial checkpoints on the mount) and the built-in GPT trainer (slow: Ray Train seed-run checkpoints
written by DDP workers on the mount, a group resumed mid-way from them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_resume import checkpointed_runs, split_runs  # noqa: E402
from test_seed_groups import check_group_results, ckpt_steps, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env, resumed_seed_runs, run_and_kill_when, tiny_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
HORIZON = 160


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def tune_trials(tune_dir: Path) -> list[dict]:
    """Every trial folder of a Tune experiment (any trainable's name): config, results, id. A line being
    written while we read (the sweep is running) is skipped, not an error."""
    trials = []
    for d in sorted(p for p in tune_dir.iterdir() if p.is_dir() and (p / "params.json").exists()) if tune_dir.is_dir() else []:
        results = []
        text = (d / "result.json").read_text() if (d / "result.json").exists() else ""
        for line in text.splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                break
        trials.append({"config": json.loads((d / "params.json").read_text()), "results": results,
                       "id": results[0]["trial_id"] if results else d.name})
    return trials


def make_folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The shared mount and two unrelated working folders, one per driver."""
    mount, job1, job2 = tmp_path / "mnt" / "shared", tmp_path / "job1", tmp_path / "job2"
    for folder in (mount, job1, job2):
        folder.mkdir(parents=True)
    return mount, job1, job2


def resume_elsewhere(name: str, mount: Path, job: Path, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", name, "--storage", str(mount / "sweeps")],
                          cwd=job, env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def assert_state_only_on_the_mount(sweep_dir: Path, *jobs: Path) -> None:
    """Tune, ASHA, MLflow (store and artifacts) and the config are in the sweep folder, none in a working folder."""
    for job in jobs:
        assert not any(name.endswith((".db", ".pkl", ".json", ".pt", ".yaml")) for name in files_under(job)), \
            sorted(files_under(job))[:20]
    on_mount = files_under(sweep_dir)
    assert {"sweep.yaml", "asha_state.json", "mlflow.db", "tune/tuner.pkl"} <= on_mount
    # MLflow's artifacts too (its default, ./mlruns, would split them over the two working folders).
    assert any(name.startswith("mlartifacts/") and name.endswith("sweep_config.yaml") for name in on_mount)


@pytest.mark.ray
def test_simulated_sweep_on_a_shared_mount_resumes_from_another_working_folder(tmp_path: Path) -> None:
    mount, job1, job2 = make_folders(tmp_path)
    grace, groups = 1000, 6
    d = {
        "name": "simshared",
        # 2 ms per simulated step (4 s a group): without it an idle machine ran all 6 groups in the time the
        # test needed to notice the third one and kill the driver, leaving nothing to resume.
        "simulator": {"law": "mpl_25m", "total_steps": 2000, "eval_interval": 50, "step_delay_s": 0.002},
        "search_space": "wsd", "baselines": ["nanogpt_cosine", "wsd_sqrt"], "seeds": [0, 1, 2], "budget": groups - 2,
        "scheduler": {"grace_period": grace, "reduction_factor": 2},
        "resources": {"cpus_per_worker": 0.25}, "max_concurrent_trials": 2,
        "storage": str(mount / "sweeps"),
        "optuna": {"storage": f"sqlite:///{mount}/optuna.db", "seed": 0},
    }
    config = tmp_path / "simshared.yaml"
    config.write_text(yaml.safe_dump(d))
    sweep_dir = mount / "sweeps" / "simshared"
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}

    def midway(trials: list[dict]) -> list[str]:
        # Below the first rung a running group cannot have been stopped by ASHA: it is mid-way.
        return [t["id"] for t in trials if t["results"] and t["results"][-1]["status"] == "running"
                and t["results"][-1]["step"] < grace]

    def groups_done_and_one_midway() -> bool:
        trials = tune_trials(sweep_dir / "tune")
        return sum(bool(t["results"]) for t in trials) >= 3 and bool(midway(trials))

    run_and_kill_when(["run", str(config)], job1, env, tmp_path / "job1.log", groups_done_and_one_midway,
                      what="three groups with results and one mid-way")
    killed = tune_trials(sweep_dir / "tune")
    before = {t["id"] for t in killed if t["results"]}
    interrupted = set(midway(killed))
    assert 3 <= len(before) < groups and interrupted, (before, interrupted)
    resume_elsewhere("simshared", mount, job2, env)

    assert_state_only_on_the_mount(sweep_dir, job1, job2)
    trials = tune_trials(sweep_dir / "tune")
    ids = [t["id"] for t in trials]
    assert len(trials) == groups and len(set(ids)) == groups and before <= set(ids)  # each group once, none lost
    assert [t["config"]["baseline"] for t in trials].count(None) == groups - 2
    for t in trials:
        # A simulated group resumes from its last Tune checkpoint (taken at most every 2 s) and simulates the
        # lost stretch again, so Tune's result log may repeat steps across the restore: check each stretch.
        # MLflow must still hold each step once (check_sweep_layout below).
        stretches = split_runs(t["results"])
        for stretch in stretches:
            check_group_results(stretch, [0, 1, 2])
        last = t["results"][-1]
        assert last["status"] == "finished" or (last["status"] == "running" and last["step"] >= grace)
        if t["id"] in interrupted:  # the group the driver died in went on after the restore, to a rung or T
            assert last["step"] >= grace, [(r["step"], r["status"]) for r in t["results"]]
    check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "simshared", "simshared", seeds=[0, 1, 2], groups=ids)


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_sweep_on_a_shared_mount_resumes_from_another_working_folder(tmp_path: Path) -> None:
    mount, job1, job2 = make_folders(tmp_path)
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

    def mid_group() -> bool:
        runs = checkpointed_runs(sweep_dir / "train")
        return bool(runs) and min(runs.values()) < HORIZON  # the baseline group is mid-way: lose the "head"

    run_and_kill_when(["run", str(config)], job1, env, tmp_path / "job1.log", mid_group, what="a group mid-way")
    before = checkpointed_runs(sweep_dir / "train")
    assert (sweep_dir / "sweep.yaml").is_file() and (sweep_dir / "tune").is_dir()

    resume_elsewhere("shared", mount, job2, env)

    assert_state_only_on_the_mount(sweep_dir, job1, job2)
    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 2 and [t["config"]["baseline"] for t in trials].count("constant") == 1
    for t in trials:
        check_group_results(t["results"], [0])
    interrupted = [t for t in trials if t["id"] in before]
    assert len(interrupted) == 1 and interrupted[0]["config"]["baseline"] == "constant", before
    # It went on from a checkpoint it had written on the mount, not from step 0 (Ray Train's latest registered
    # checkpoint, which can be older than the newest folder on disk).
    run = f"{interrupted[0]['id']}-seed0"
    resumed = resumed_seed_runs(env)
    assert run in resumed and resumed[run] in ckpt_steps(sweep_dir / "train" / run), (resumed, before)
    assert interrupted[0]["results"][-1]["status"] == "finished"
    # Its seed run kept writing checkpoints in the same run folder on the mount, up to the horizon.
    after = checkpointed_runs(sweep_dir / "train")
    assert after[interrupted[0]["id"]] == HORIZON
    check_sweep_layout(f"sqlite:///{sweep_dir}/mlflow.db", "shared", "shared", seeds=[0], groups=[t["id"] for t in trials],
                       eval_every=20)
