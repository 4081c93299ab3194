"""The MLflow UI and optuna-dashboard on a finished tiny sweep, opened in a real headless browser (Debian's
`chromium`, driven by playwright through its executable path) through `sweep dashboard`, as a user would.

Checked: the MLflow runs table lists the sweep run and its groups named in words; a group run's page names
its parent sweep run and its seed runs; the sweep run's artifacts hold the report; optuna-dashboard lists the
study's trials with their Complete and Pruned states. Screenshots of both go to the test's folder, or to
$SCHEDSWEEP_SCREENSHOTS (the README's come from there: docs/images/).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the [test] extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser on PATH (Debian: apt-get install -y chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
]


def _read_until(proc: subprocess.Popen, marker: str) -> str:
    out = []
    for line in proc.stdout:
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError("".join(out) + proc.stderr.read())


def _text_when(page, url: str, *expected: str, timeout_s: float = 90) -> str:
    """Open `url` and wait until the page's text holds every `expected` string (the UIs render client-side)."""
    page.goto(url)
    pattern = " && ".join(f"document.body.innerText.includes({s!r})" for s in expected)
    page.wait_for_function(pattern, timeout=timeout_s * 1000)
    return page.inner_text("body")


def test_mlflow_ui_and_optuna_dashboard_show_the_finished_sweep_in_a_browser(tmp_path: Path) -> None:
    # linear_to_zero as the baseline: late in its decay it is beaten by some shapes and not by others, so ASHA
    # stops some groups (PRUNED) and lets others finish (COMPLETE).
    cfg = {"name": "ui", "simulator": {"law": "mpl_25m", "total_steps": 1000, "eval_interval": 250},
           "search_space": "wsd", "baselines": ["linear_to_zero"], "seeds": [0, 1], "budget": 4,
           "scheduler": {"grace_period": 250, "reduction_factor": 2}, "storage": str(tmp_path / "sweeps"),
           "optuna": {"storage": f"sqlite:///{tmp_path}/optuna.db", "seed": 0}}
    (tmp_path / "ui.yaml").write_text(yaml.safe_dump(cfg))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(tmp_path / "ui.yaml")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/sweeps/ui/mlflow.db")
    exp = client.get_experiment_by_name("ui")
    runs = client.search_runs([exp.experiment_id])
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get("schedsweep.kind"), []).append(r)
    (sweep_run,) = by_kind["sweep"]
    groups = by_kind["group"]
    pruned = [g for g in groups if g.data.tags.get("schedsweep.status") == "pruned"]
    assert len(groups) == 5 and pruned and len(pruned) < 4, [g.data.tags.get("schedsweep.status") for g in groups]

    shots = Path(os.environ.get("SCHEDSWEEP_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    dash = subprocess.Popen([sys.executable, "-m", "sweep.cli", "dashboard", "ui", "--storage", str(tmp_path / "sweeps")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _read_until(dash, "Ctrl-C stops them.")
        urls = dict(re.findall(r"^\s+(MLflow|Optuna|runs)\s*: (http://\S+)$", out, re.M))
        assert set(urls) == {"MLflow", "Optuna", "runs"}, out
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            # The runs table (the printed link asks for MLflow 3's model-training view, not its GenAI overview):
            # the sweep run on top, its group and seed runs nested under it (collapsed), all of them counted.
            group_names = [g.info.run_name for g in groups]
            assert all(re.search(r"\([0-9a-f]{8}\)$", n) for n in group_names), group_names  # shapes in words
            _text_when(page, urls["runs"], "Run Name", sweep_run.info.run_name, f"{len(runs)} matching runs")
            page.screenshot(path=str(shots / "mlflow_runs.png"))
            # A group run's page, its name in words: its parent (the sweep run) and its seed runs (their names
            # are cut short on that page after the first, whose id suffix is whole).
            group = next(g for g in groups if g.data.tags.get("schedsweep.status") == "finished")
            gid = group.data.tags["schedsweep.group"]
            text = _text_when(page, f"{urls['MLflow']}/#/experiments/{exp.experiment_id}/runs/{group.info.run_id}"
                                    "?workflowType=machine_learning",
                              "Parent run", "Child runs", group.info.run_name, f"({gid}) seed ")
            # The parent's name comes in a request of its own, after the rest of the page (seen in CI).
            page.wait_for_function(r"name => new RegExp('Parent run\\s+' + name + '\\s').test(document.body.innerText)",
                                   arg=sweep_run.info.run_name, timeout=90_000)
            page.screenshot(path=str(shots / "mlflow_group.png"))
            text = page.inner_text("body")
            assert "final_val_loss_std" in text and "final_val_loss_ci95_low" in text  # seed statistics as metrics
            # The sweep run's artifacts: the report.
            _text_when(page, f"{urls['MLflow']}/#/experiments/{exp.experiment_id}/runs/{sweep_run.info.run_id}"
                             "/artifacts?workflowType=machine_learning", "report", "leaderboard.txt")
            # optuna-dashboard: the study's trials with their states.
            text = _text_when(page, f"{urls['Optuna']}/dashboard/studies/1/trials", "4 Trials", "Complete", "Pruned")
            states = re.findall(r"^Trial \d+\n(Complete|Pruned)$", text, re.M)
            assert sorted(states) == sorted(["Complete"] * (4 - len(pruned)) + ["Pruned"] * len(pruned)), text[:1500]
            page.screenshot(path=str(shots / "optuna_trials.png"))
            browser.close()
    finally:
        dash.send_signal(signal.SIGINT)
        try:
            dash.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dash.kill()
            dash.wait()
    assert (shots / "mlflow_runs.png").stat().st_size > 10_000 and (shots / "optuna_trials.png").stat().st_size > 10_000
