"""Honest verdicts end to end on the simulator: `sweep run` + `sweep report` + `sweep confirm` on a sweep where
the truth is known.

The searched shapes are linear-to-zero with a floor drawn from [0, 1e-6]: each one is a different LR sequence
(so its simulated noise is its own), but its true final loss is within 1e-6 nats of the `linear_to_zero`
baseline, i.e. no shape truly differs from it. The other baseline, `constant`, truly differs (worse by ~0.022
nats at this horizon, ten times the paired noise). So the reports must call nothing "better" or "worse" against
`linear_to_zero`, and must resolve the true gap to `constant`. `constant` is listed second and its cooldown
probe is worse than `linear_to_zero`'s at the first rung: stock ASHA (reduction factor 2) would have stopped it
there. Here it finishes and is compared. The confirmation runs on fresh seeds.

One run of each command: the rate at which the null part stays silent is measured by
`benchmarks/verdict_error_rates.py` (BENCHMARKS.md), over thousands of simulated reports.

Real Ray Tune, real Optuna (TPE), real MLflow (sqlite).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

from search_spaces import get_preset  # noqa: E402
from sweep.confirm.plan import read_groups  # noqa: E402
from trainable.simulator import SimulatorConfig, noiseless_final_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SIM = {"total_steps": 24000, "eval_interval": 3000, "noise_std": 0.0015, "seed_offset_std": 0.001}


def config(tmp: Path) -> dict:
    return {
        "name": "honest",
        "simulator": SIM,
        # linear_to_zero's own shape (warmup 2 %, then linear to the floor), the floor within 1e-6 of zero.
        "search_space": {"warmup_frac": 0.02, "hold_frac": 0.02, "shape": "linear", "floor": [0.0, 1.0e-6]},
        "baselines": ["linear_to_zero", "constant"],
        "seeds": [0, 1, 2, 3, 4],
        "budget": 4,
        "scheduler": {"grace_period": 3000, "reduction_factor": 2, "rung_metric": "cooldown"},
        "resources": {"cpus_per_worker": 0.25},
        "max_concurrent_trials": 1,  # baselines first, in order: linear_to_zero sets the first rung's bar
        "storage": str(tmp / "sweeps"),
    }


def cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def table(markdown: str, heading: str) -> list[list[str]]:
    lines = markdown.split("## " + heading, 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|")][2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows]


@pytest.mark.ray
@pytest.mark.slow
def test_null_shapes_get_no_verdict_the_true_gap_is_found_and_baselines_always_finish(tmp_path: Path) -> None:
    cfg_sim = SimulatorConfig(**SIM)
    true_gap = noiseless_final_loss(get_preset("constant"), cfg_sim) - noiseless_final_loss(get_preset("linear_to_zero"), cfg_sim)
    assert true_gap > 0.02  # constant is truly worse at this horizon, ten times the paired seed noise

    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    (tmp_path / "honest.yaml").write_text(yaml.safe_dump(config(tmp_path)))
    storage = tmp_path / "sweeps"
    cli("run", str(tmp_path / "honest.yaml"), env=env, cwd=tmp_path)

    # Both baselines finished; stock ASHA would have stopped constant at the first rung (worse than the only
    # value recorded before it, linear_to_zero's), and its value is recorded there for the other groups' cut-offs.
    groups = {g.config["baseline"] or g.group_id: g for g in read_groups(str(storage / "honest"))}
    for name in ("constant", "linear_to_zero"):
        assert groups[name].status == "finished" and groups[name].step == 24000
    rungs = {float(m): rec for m, rec in json.loads((storage / "honest" / "asha_state.json").read_text())["rungs"]}
    first = rungs[3000.0]
    const_id, ltz_id = groups["constant"].group_id, groups["linear_to_zero"].group_id
    assert first[const_id] < first[ltz_id]  # signed (-loss): constant was worse at the rung

    out = cli("report", "honest", "--storage", str(storage), env=env, cwd=tmp_path).stdout
    rows = table(out, "Paired differences")
    # Searched shapes are named in words ("wsd: warmup 2% lin, lin -> 1e-07 (id)"), baselines by their preset.
    shape_rows = [r for r in rows if r[0].startswith("wsd: ")]
    assert shape_rows and not [r for r in rows if r[1].startswith("baseline")]  # no "baseline pruned" row
    for r in shape_rows:
        if r[1].startswith("linear_to_zero"):  # the null: no shape truly differs from linear_to_zero
            assert "better" not in r[-1] and "worse" not in r[-1], r
        else:  # every shape is truly better than constant
            assert r[-1] == "**better**", r
    base_pair = next(r for r in rows if r[0].startswith("constant"))
    assert base_pair[-1] == "**worse**"  # the baseline ASHA would have pruned is compared, and the gap resolved
    assert re.search(r"The \d+ tested comparisons of this report are one family, adjusted by Holm", out)
    assert "exploratory" in out

    confirm = cli("confirm", "honest", "--top", "1", "--horizons", "1x", "--seeds", "5", "--storage", str(storage),
                  "--lm-eval-tasks", "none", env=env, cwd=tmp_path)
    assert confirm.returncode == 0
    report = (storage / "honest" / "confirm" / "report.md").read_text()
    assert "5, 6, 7, 8, 9, fresh: disjoint from the sweep's own (0, 1, 2, 3, 4)" in report
    delta_rows = table(report, "Paired delta")
    assert len(delta_rows) == 2
    for r in delta_rows:
        if r[1] == "linear_to_zero":
            assert "better" not in r[2] and "worse" not in r[2], r  # the null finalist is not called better
        else:
            assert "**better**" in r[2], r  # the finalist is truly better than constant
    for g in read_groups(str(storage / "honest.confirm-1x")):
        assert g.config["seeds"] == [5, 6, 7, 8, 9]
