"""The simulator backend runs the whole sweep service.

Fast tests: a simulated group's results follow the group contract, carry `rung_loss`, and continue
bit-for-bit from a checkpoint; a simulated group asks Tune for a fraction of a CPU. The Ray test sweeps 200
simulated groups through `sweep run` (real Ray Tune, Optuna TPE on sqlite, PersistentASHA on the cooldown
rung metric, MLflow on sqlite) and checks what every layer recorded.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from sweep.config import SweepConfig
from sweep.config.trial import trial_spec
from sweep.engine.resources import concurrency, group_resources
from sweep.engine.rung_metrics import RUNG_KEY
from sweep.engine.sim_trial import SimulatedGroup

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env, run_and_kill_when  # noqa: E402
from sweep.core.trial_spec import TrialSpec

REPO = Path(__file__).resolve().parents[3]
TrialState = optuna.trial.TrialState


def sim_sweep(tmp: Path, name: str = "sim", **over) -> dict:
    """A simulated sweep config: 2000 steps, an eval (and a result) every 250, rungs at 250, 500, 1000."""
    d = {
        "name": name,
        "simulator": {"law": "mpl_25m", "total_steps": 2000, "eval_interval": 250},
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine", "wsd_sqrt"],
        "seeds": [0, 1],
        "budget": 8,
        "scheduler": {"grace_period": 250, "reduction_factor": 2, "rung_metric": "cooldown"},
        "resources": {"cpus_per_worker": 0.25},
        "max_concurrent_trials": 8,
        "storage": str(tmp / "sweeps"),
        "optuna": {"storage": f"sqlite:///{tmp}/optuna.db", "seed": 0},
    }
    d.update(over)
    return d


def group_config(tmp: Path, metric: str, schedule: dict) -> dict:
    cfg = SweepConfig.from_dict(sim_sweep(tmp, scheduler={"grace_period": 250, "rung_metric": metric}))
    return {**trial_spec(cfg).to_config(), "schedule": schedule, "baseline": None, "seeds": [0, 1, 2]}


def untimed(results: list[dict]) -> list[dict]:
    """Results without the wall-clock throughput (the only values allowed to differ between runs)."""
    out = []
    for r in results:
        r = {k: v for k, v in r.items() if k != "tokens_per_s"}
        r["per_seed"] = {s: {k: v for k, v in p.items() if k != "tokens_per_s"} for s, p in r["per_seed"].items()}
        out.append(r)
    return out


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["raw", "cooldown", "predicted"])
def test_simulated_group_follows_the_group_contract_and_resumes_bit_for_bit(tmp_path: Path, metric: str) -> None:
    config = group_config(tmp_path, metric, {"warmup_frac": 0.05, "hold_frac": 0.6, "shape": "cosine", "floor": 0.1})
    whole = list(SimulatedGroup(TrialSpec.from_config(config), "g", tmp_path / "a").results())
    steps = [r["step"] for r in whole]
    assert steps == list(range(250, 2001, 250))
    assert [r["status"] for r in whole] == ["running"] * 7 + ["finished"]
    for r in whole:
        assert sorted(r["per_seed"]) == ["0", "1", "2"] and r["per_seed"]["2"]["train_run"] == "g-seed2"
        assert r["val_loss"] == pytest.approx(math.fsum(p["val_loss"] for p in r["per_seed"].values()) / 3, abs=1e-12)
    rung = {r["step"]: r[RUNG_KEY] for r in whole}
    raw = {r["step"]: r["val_loss"] for r in whole}
    assert rung[750] == raw[750] and rung[2000] == raw[2000]  # between rungs, and at the end
    if metric == "raw":
        assert rung == raw
    elif metric == "predicted":
        # One or two points per seed: nothing to fit, ASHA lets the group pass; four points: a prediction.
        assert math.isnan(rung[250]) and math.isnan(rung[500])
        assert abs(rung[1000] - raw[2000]) < 0.1
    else:
        assert all(rung[s] < raw[s] for s in (250, 500, 1000))

    # Checkpoint after the result at step 500, continue elsewhere: the same results, to the last bit.
    group = SimulatedGroup(TrialSpec.from_config(config), "g", tmp_path / "b")
    for r in group.results():
        if r["step"] == 500:
            group.checkpoint(tmp_path / "ckpt")
            break
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["group.json", "seed0", "seed1", "seed2"]
    resumed = list(SimulatedGroup(TrialSpec.from_config(config), "g", tmp_path / "c", resume_dir=tmp_path / "ckpt").results())
    assert json.dumps(untimed(resumed)) == json.dumps(untimed(whole[2:]))


def test_a_simulated_group_takes_a_fraction_of_a_cpu(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(sim_sweep(tmp_path, seeds=[0, 1, 2, 3]))
    need = group_resources(cfg)
    assert need.cpus == 0.25 and need.gpus == 0.0  # one process for all seeds, no Train workers
    assert concurrency(cfg, {"CPU": 2.0}) == 8
    assert concurrency(cfg, {"CPU": 1.0}) == 4


def test_packaged_simulated_config_is_valid() -> None:
    cfg = SweepConfig.from_yaml(REPO / "configs" / "simulated.yaml")
    assert cfg.backend == "simulator" and cfg.scheduler.milestones(cfg.max_step()) == [3000, 6000, 12000]


# ---------------------------------------------------------------------------------------------------------
def read_sim_trials(tune_dir: Path) -> list[dict]:
    trials = []
    for d in sorted(p for p in tune_dir.iterdir() if p.is_dir() and (p / "params.json").exists()):
        results = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
        trials.append({"config": json.loads((d / "params.json").read_text()), "results": results,
                       "id": results[0]["trial_id"] if results else None})
    return trials


def sweep_and_check(tmp_path: Path, groups: int) -> float:
    """`sweep run` of `groups` simulated groups (2 baselines + TPE), then check every layer; returns the wall
    time of `sweep run`."""
    # A result every 500 steps, rungs at 500 and 1000: the driver's cost is per result and per group (MLflow
    # runs, the schedule plot), so fewer results per group keep many groups affordable.
    d = sim_sweep(tmp_path, name="simmany", budget=groups - 2,
                  simulator={"law": "mpl_25m", "total_steps": 2000, "eval_interval": 500},
                  scheduler={"grace_period": 500, "reduction_factor": 2, "rung_metric": "cooldown"})
    path = tmp_path / "simmany.yaml"
    path.write_text(yaml.safe_dump(d))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path)], cwd=tmp_path,
                          env={**ray_env(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=2400)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(f"{groups} simulated groups: sweep run took {wall:.1f} s")
    # The run ends with the answer: the report written and its verdicts printed, not only the leaderboard.
    assert "\nVerdicts (shape minus baseline" in proc.stdout and "  report       : " in proc.stdout, proc.stdout[-3000:]
    assert (tmp_path / "sweeps" / "simmany" / "report.md").is_file()
    check_many(tmp_path, groups, d["optuna"]["storage"])
    return wall


def check_many(tmp_path: Path, groups: int, optuna_storage: str) -> None:
    """What every layer recorded for the sweep `sweep_and_check` ran."""
    sweep_dir = tmp_path / "sweeps" / "simmany"
    trials = read_sim_trials(sweep_dir / "tune")
    assert len(trials) == groups and len({t["id"] for t in trials}) == groups
    finished = stopped = 0
    gaps = []
    for t in trials:
        results = t["results"]
        steps = [r["step"] for r in results]
        assert steps == sorted(set(steps)) and all(RUNG_KEY in r for r in results)
        assert all(sorted(r["per_seed"]) == ["0", "1"] for r in results)
        last = results[-1]
        if last["status"] == "finished":
            finished += 1
            assert last["step"] == 2000 and last[RUNG_KEY] == last["val_loss"]
        else:
            stopped += 1
            assert last["status"] == "running" and last["step"] < 2000
        for r in results:
            if r["step"] in (500, 1000) and r["status"] == "running":
                gaps.append(r[RUNG_KEY] - r["val_loss"])  # the cooldown probe's gain at a rung
    # ASHA (rf 2) stops groups below a rung's median so far; as TPE finds better shapes, later groups pass
    # more often (200 groups: 79 stopped, 121 finished).
    assert finished >= 2 and stopped >= groups // 5, (finished, stopped)
    assert len(gaps) >= groups and all(g < 0 for g in gaps)

    study = optuna.load_study(study_name="simmany", storage=optuna_storage)
    states = [t.state for t in study.get_trials()]
    searched = [t for t in trials if t["config"]["baseline"] is None]
    assert len(states) == len(searched) == groups - 2
    assert states.count(TrialState.COMPLETE) == sum(t["results"][-1]["status"] == "finished" for t in searched)
    assert states.count(TrialState.PRUNED) == sum(t["results"][-1]["status"] == "running" for t in searched)

    asha = json.loads((sweep_dir / "asha_state.json").read_text())
    first_rung = next(rec for m, rec in asha["rungs"] if m == 500)
    # A group may also be "stopped" at the rung on its very last result (step 2000), which ends it anyway.
    assert len(first_rung) == groups and asha["num_stopped"] >= stopped

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("simmany")
    group_runs = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'group'", max_results=1000)
    seed_runs = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'seed'", max_results=1000)
    assert len(group_runs) == groups and len(seed_runs) == 2 * groups
    assert sum(r.data.tags.get("schedsweep.status") == "finished" for r in group_runs) == finished


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_two_hundred_simulated_groups_through_the_whole_service(tmp_path: Path) -> None:
    """The issue's done-when: >= 200 simulated trials through the full service. The driver's MLflow (sqlite)
    and Tune bookkeeping set the pace: 190 s at load average 3-12, 397 s at 30, more than 15 min at 45-50
    on 2 shared cores (see docs/design.md, "The simulator backend")."""
    sweep_and_check(tmp_path, 200)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_killed_simulated_sweep_resumes_bit_for_bit(tmp_path: Path) -> None:
    """SIGKILL the driver once a group has a Tune checkpoint, `sweep resume`: every group ends with exactly the
    results an uninterrupted in-process run of its config gives."""
    # 1 s of simulated work per eval and seed: a group takes ~16 s, long enough to be caught mid-way.
    d = sim_sweep(tmp_path, name="simresume", budget=3, baselines=["wsd_sqrt"], max_concurrent_trials=2,
                  simulator={"law": "mpl_25m", "total_steps": 2000, "eval_interval": 250, "step_delay_s": 0.004},
                  scheduler={"enabled": False})
    path = tmp_path / "simresume.yaml"
    path.write_text(yaml.safe_dump(d))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    tune_dir = tmp_path / "sweeps" / "simresume" / "tune"
    run_and_kill_when(["run", str(path)], tmp_path, env, tmp_path / "first.log",
                      lambda: tune_dir.exists() and any(tune_dir.glob("*/checkpoint_*")), timeout_s=600,
                      what="a group checkpoint")

    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "simresume", "--storage",
                           str(tmp_path / "sweeps")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "\nVerdicts (shape minus baseline" in proc.stdout  # a resumed sweep ends with its answer too

    trials = read_sim_trials(tune_dir)
    assert len(trials) == 4 and len({t["id"] for t in trials}) == 4
    resumed = 0
    for t in trials:
        expected = {r["step"]: r for r in untimed(list(SimulatedGroup(TrialSpec.from_config(t["config"]), t["id"]).results()))}
        got = untimed(t["results"])
        assert got[-1]["status"] == "finished" and got[-1]["step"] == 2000
        for r in got:  # every reported result, before and after the kill, is the uninterrupted one
            r = {k: v for k, v in r.items() if k in expected[r["step"]]}
            assert json.dumps(r, sort_keys=True) == json.dumps(expected[r["step"]], sort_keys=True)
        steps = [r["step"] for r in got]
        if steps != sorted(set(steps)):
            resumed += 1  # results after the last checkpoint were reported again, identically
            assert min(s for i, s in enumerate(steps) if i and s <= steps[i - 1]) > 250
    study = optuna.load_study(study_name="simresume", storage=d["optuna"]["storage"])
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3
