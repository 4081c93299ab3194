"""End to end through the CLI: `sweep run` on the simulator backend (real Ray, Tune, Optuna, sqlite MLflow),
then `sweep report` on what it logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
VERDICTS = {"**better**", "**worse**", "**no detectable difference**"}


def _sweep(tmp_path: Path) -> dict:
    # No ASHA: every group finishes, so every shape has a verdict against both baselines.
    return {
        "name": "simrep",
        "simulator": {"law": "mpl_25m", "peak_lr": 3.0e-4, "total_steps": 1000, "eval_interval": 250,
                      "noise_std": 0.0015, "seed_offset_std": 0.001},
        "search_space": "wsd", "baselines": ["nanogpt_cosine", "wsd_sqrt"], "seeds": [0, 1, 2], "budget": 2,
        "scheduler": {"enabled": False}, "resources": {"cpus_per_worker": 0.25}, "max_concurrent_trials": 4,
        "storage": str(tmp_path / "sweeps"), "verdict": {"effect": 0.003, "seed_std": 0.0015},
    }


def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={**ray_env(tmp_path), "PYTHONPATH": str(REPO)}, timeout=600)


def _table(markdown: str, section: str) -> list[list[str]]:
    lines = markdown.split("## " + section, 1)[1].split("\n## ", 1)[0].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")][2:]


@pytest.mark.ray
@pytest.mark.slow
def test_simulated_sweep_then_report(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(_sweep(tmp_path)))
    run = _cli(tmp_path, "run", str(path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    # 3 seeds cannot resolve the configured 0.003-nat effect: a warning, not an error.
    assert "sweep: warning: verdict: 3 seeds give a paired comparison only" in run.stderr

    report = _cli(tmp_path, "report", "simrep", "--storage", str(tmp_path / "sweeps"))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    sweep_dir = tmp_path / "sweeps" / "simrep"
    markdown = (sweep_dir / "report.md").read_text()
    assert report.stdout.startswith(markdown)

    ranking = _table(markdown, "Ranking")
    assert len(ranking) == 4 and [r[0] for r in ranking] == ["1", "2", "3", "4"]
    means = [float(r[3]) for r in ranking]
    assert means == sorted(means)
    # The report's means are the ones the sweep's own callback logged on each group run.
    client = MlflowClient(f"sqlite:///{sweep_dir}/mlflow.db")
    exp = client.get_experiment_by_name("simrep")
    groups = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'group'")
    logged = {r.data.tags["schedsweep.group"]: r.data.metrics["final_val_loss_mean"] for r in groups}
    for row in ranking:
        group = row[1].rsplit("(", 1)[1].rstrip(")")
        assert float(row[3]) == pytest.approx(logged[group], abs=5e-5)

    rows = _table(markdown, "Paired differences")
    assert len(rows) == 2 * 2 + 1  # each searched shape vs both baselines, and wsd_sqrt vs nanogpt_cosine
    assert all(r[2] == "3" and r[7] == "n < 8" and r[8] in VERDICTS for r in rows)
    assert "With 3 seeds, a paired t-test at the per-comparison level this family imposes (0.002)" in markdown
    assert "The 5 tested comparisons of this report are one family, adjusted by Holm" in markdown

    sweep_run = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'sweep'")[0]
    logged_files = sorted(Path(a.path).name for a in client.list_artifacts(sweep_run.info.run_id, "report"))
    assert logged_files == ["report.md", "report_schedules.png", "report_val_loss.png", "report_val_loss_groups.png"]
    for name in logged_files:
        assert (sweep_dir / name).is_file()
