"""`sweep confirm` end to end on the simulator backend: a small sweep, its confirmation at 1x and 2x with 3
seeds, a driver killed in the middle of the 2x stage, `sweep resume` of that stage, and `sweep confirm` again.

Real Ray Tune, real MLflow (sqlite). Checked: each stage ran every finalist and baseline once on the same
seeds to its horizon, on fresh seeds disjoint from the sweep's; the 1x stage's finalist losses equal an
in-process simulation of the finalist's shape on those seeds (the simulator is keyed by shape, seed and step,
so this proves the same shape ran on the new seeds); the interrupted stage
continued without duplicate groups, results or MLflow steps; the stage runs are nested under the sweep's run;
the report's paired deltas equal a recomputation from the stage results.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_mlflow_layout import check_sweep_layout  # noqa: E402
from test_sweep_run_helpers import ray_env, run_and_kill_when  # noqa: E402

from search_spaces import schedule_from_dict  # noqa: E402
from sweep.confirm.plan import read_groups  # noqa: E402
from trainable.simulator import SimulatorConfig, simulate  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def sim_sweep(tmp: Path) -> dict:
    return {
        "name": "sim",
        # The delay makes a 2x group take ~10 s, long enough to kill the driver in the middle of it.
        "simulator": {"total_steps": 1000, "eval_interval": 250, "step_delay_s": 0.0015},
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine"],
        "seeds": [0, 1],
        "budget": 2,
        "scheduler": {"enabled": False},  # both searched shapes finish: a finalist is certain
        "resources": {"cpus_per_worker": 0.25},
        "max_concurrent_trials": 4,
        "storage": str(tmp / "sweeps"),
    }


def cli(*args: str, env: dict, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def tune_results(sweep_dir: Path) -> dict[str, list[dict]]:
    """Trial id -> every result Tune wrote for it (result.json of each trial folder)."""
    out: dict[str, list[dict]] = {}
    for f in (sweep_dir / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out.setdefault(rows[0]["trial_id"], []).extend(rows)
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_confirm_two_horizons_three_seeds_killed_and_resumed(tmp_path: Path) -> None:
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    storage = tmp_path / "sweeps"
    cfg_path = tmp_path / "sim.yaml"
    cfg_path.write_text(yaml.safe_dump(sim_sweep(tmp_path)))
    cli("run", str(cfg_path), env=env, cwd=tmp_path)
    sweep_groups = {g.group_id: g for g in read_groups(str(storage / "sim"))}
    searched = sorted((g for g in sweep_groups.values() if not g.config["baseline"]), key=lambda g: g.mean_val_loss)
    finalist = searched[0]

    confirm = ["confirm", "sim", "--top", "1", "--horizons", "1x,2x", "--seeds", "3", "--storage", str(storage)]
    stage2 = storage / "sim.confirm-2x"
    # Kill once a 2x group has reported (and checkpointed) but before the stage is done.
    run_and_kill_when(confirm, tmp_path, env, tmp_path / "confirm1.log",
                      lambda: any(stage2.glob("tune/*/checkpoint_*")), what="a report of the 2x stage")
    assert not (storage / "sim" / "confirm" / "report.md").exists()
    done = {tid for tid, rows in tune_results(stage2).items() if rows[-1]["status"] == "finished"}
    started = {re.search(r"_([0-9a-f]{8})_\d+_", p.parent.name).group(1) for p in stage2.glob("tune/*/checkpoint_*")}
    interrupted = started - done

    # Resume the stage like any sweep, then the same confirm command finds both stages done and reports.
    cli("resume", "sim.confirm-2x", "--storage", str(storage), env=env, cwd=tmp_path)
    out = cli(*confirm, "--lm-eval-tasks", "none", env=env, cwd=tmp_path).stdout
    assert "stage sim.confirm-1x already done" in out and "stage sim.confirm-2x already done" in out

    stages = {label: read_groups(str(storage / f"sim.confirm-{label}")) for label in ("1x", "2x")}
    deltas = {}
    for label, horizon in (("1x", 1000), ("2x", 2000)):
        groups = stages[label]
        keys = sorted(str(g.config["baseline"] or g.config["source_group"]) for g in groups)
        assert keys == sorted(["nanogpt_cosine", finalist.group_id]), keys  # each group exactly once
        results = tune_results(storage / f"sim.confirm-{label}")
        assert set(results) == {g.group_id for g in groups}
        for g in groups:
            # Fresh seeds: the smallest integers the sweep (seeds 0, 1) never ran.
            assert g.config["seeds"] == [2, 3, 4] and g.status == "finished" and g.step == horizon
            steps = [r["step"] for r in results[g.group_id]]
            # No step lost; a step reported before the kill may come again after the restore, never out of order.
            assert sorted(set(steps)) == list(range(250, horizon + 1, 250)) and steps == sorted(steps), steps
        fin = next(g for g in groups if g.config.get("source_group") == finalist.group_id)
        base = next(g for g in groups if g.config["baseline"] == "nanogpt_cosine")
        diffs = [fin.final_val_loss[s] - base.final_val_loss[s] for s in ("2", "3", "4")]
        deltas[label] = math.fsum(diffs) / 3
        check_sweep_layout(f"sqlite:///{storage}/sim/mlflow.db", "sim", f"sim.confirm-{label}", seeds=[2, 3, 4],
                           groups=[g.group_id for g in groups])
    # The groups cut short went on under their own trial ids (restored, not started again as new groups).
    assert interrupted and interrupted <= {g.group_id for g in stages["2x"]}

    # 1x ran the finalist's own shape on the fresh seeds: its losses are the simulator's for that shape and seed.
    fin1 = next(g for g in stages["1x"] if g.config.get("source_group") == finalist.group_id)
    sim_cfg = SimulatorConfig.from_dict(sim_sweep(tmp_path)["simulator"])
    shape = schedule_from_dict(finalist.config["schedule"])
    for seed in (2, 3, 4):
        expected = simulate(sim_cfg, shape, seed).final_metrics["val_loss"]
        assert fin1.final_val_loss[str(seed)] == pytest.approx(expected, abs=1e-12)

    # MLflow: the stage runs hang under the sweep's run; the report and its deltas are logged there.
    client = MlflowClient(f"sqlite:///{storage}/sim/mlflow.db")
    exp = client.get_experiment_by_name("sim")
    sweep_runs = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'sweep'")
    parent = next(r for r in sweep_runs if r.info.run_name == "sim")
    stage_runs = {r.data.tags.get("schedsweep.stage"): r for r in sweep_runs if r.info.run_name != "sim"}
    assert set(stage_runs) == {"confirm-1x", "confirm-2x"} and len(sweep_runs) == 3
    for r in stage_runs.values():
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id and r.data.tags["schedsweep.parent_sweep"] == "sim"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "confirm")}
    assert artifacts == {"confirm/report.md", "confirm/deltas.png", "confirm/deltas.json"}
    key = f"confirm.delta.{finalist.group_id}.vs.nanogpt_cosine"
    history = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, key)}
    assert history == pytest.approx({1000: deltas["1x"], 2000: deltas["2x"]}, abs=1e-12)

    report = (storage / "sim" / "confirm" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith(f"| {finalist.group_id} | nanogpt_cosine |"))
    assert f"{deltas['1x']:+.4f} [" in row and f"{deltas['2x']:+.4f} [" in row
    assert f"- {finalist.group_id} vs nanogpt_cosine: " in report
    assert "2, 3, 4, fresh: disjoint from the sweep's own (0, 1)" in report
    assert "the 2 comparisons (finalists x baselines x horizons) are one family, adjusted by Holm" in report
    # The finalist is named by its shape in words, as in the sweep's leaderboard.
    assert f"| {finalist.group_id} | `{finalist.description}` (" in report and "wsd: " in finalist.description
    assert (storage / "sim" / "confirm" / "deltas.png").read_bytes()[:4] == b"\x89PNG"
