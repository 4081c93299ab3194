"""A nanoGPT-style `train.py` (tests/fixtures/nanogpt_double, a test double written for this project) swept
as a user would: the diff in docs/bring-your-own-trainer.md applied to it, nothing else.

- Without Ray: the diff applies; the changed script trains on CPU alone and in its DDP branch (gloo), where
  the unchanged one dies asking for NCCL.
- A sweep of the changed script with 2 gloo workers per seed run and ASHA on the `predicted` rung metric
  (its eval at step 0 included), the driver SIGKILLed and resumed: it ends complete, its seeds differ, no
  warning, no more checkpoints than `script.keep_checkpoints`, no scratch left.
- A sweep of the changed script with one worker (its single-process branch) and ASHA on raw: its LR follows
  each group's shape.
- A sweep of the unchanged script with one worker (no torchrun variables: its single-process branch) through
  `metrics_regex` and ASHA on raw: it ignores seed and schedule, and the sweep says so once per group and
  kind, and its report makes no verdict.

Real Ray Tune and Train, real Optuna (sqlite), MLflow on sqlite.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from search_spaces import schedule_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_seed_groups import check_group_results, read_trials  # noqa: E402
from test_sweep_run_helpers import ray_env, run_and_kill_when  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DOUBLE = REPO / "tests" / "fixtures" / "nanogpt_double"
DOC = REPO / "docs" / "bring-your-own-trainer.md"
HORIZON, EVERY = 24, 4
SMALL = ["--device=cpu", "--compile=False", "--eval_iters=2", "--batch_size=4", "--block_size=32",
         "--gradient_accumulation_steps=2",  # the global count: nanoGPT asserts a multiple of the ranks
         "--log_interval=1000", "--always_save_checkpoint=True"]
# The sweep's own warning line (Ray prints WARNING lines of its own): group id, kind.
IGNORED = re.compile(r"\] WARNING (\S+) \(.*?\): (seed ignored|schedule ignored): ")
NANOGPT_LINE = r"step (?P<step>\d+): train loss (?P<train_loss>[^,\s]+), val loss (?P<val_loss>\S+)"


def doc_diff() -> str:
    text = DOC.read_text()
    block = text.split("<!-- nanogpt-diff:start -->", 1)[1].split("<!-- nanogpt-diff:end -->", 1)[0]
    return block.split("```diff\n", 1)[1].rsplit("```", 1)[0]


def make_double(folder: Path, patched: bool) -> Path:
    """A copy of the double with character data, the docs' diff applied when `patched`; returns train.py."""
    shutil.copytree(DOUBLE, folder, ignore=shutil.ignore_patterns("__pycache__", "data"))
    from trainable.data.bundled_corpus import bundled_texts

    (folder / "text.txt").write_text("\n\n".join(itertools.islice(bundled_texts(), 150)), encoding="utf-8")
    subprocess.run([sys.executable, "prepare.py", "text.txt"], cwd=folder, check=True, capture_output=True)
    if patched:
        (folder / "nanogpt.diff").write_text(doc_diff())
        proc = subprocess.run(["git", "apply", "--verbose", "nanogpt.diff"], cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return folder / "train.py"


def run_script(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *SMALL, *args], cwd=script.parent, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})})


def test_the_docs_diff_makes_the_double_train_on_cpu_alone_and_in_its_ddp_branch(tmp_path: Path) -> None:
    original, changed = make_double(tmp_path / "a", False), make_double(tmp_path / "b", True)
    diff = doc_diff()
    added = [l for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    removed = [l for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    assert (len(added), len(removed)) == (12, 7)  # what the docs and the README say
    torchrun = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"}
    # As found: under a torchrun-style launch on a CPU host the script dies in its DDP branch.
    proc = run_script(original, "--max_iters=4", "--eval_interval=2", env=torchrun)
    assert proc.returncode != 0 and "NCCL" in proc.stderr, proc.stderr[-2000:]
    # Changed, alone (no sweep): the shape comes from --lr-schedule and the script's own device is used.
    proc = run_script(changed, "--max_iters=8", "--eval_interval=4", "--lr-schedule", "wsd_sqrt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.findall(r"step (\d+):", proc.stdout) == ["0", "4", "8"]
    # Changed, in its DDP branch on a CPU worker: the device and backend the sweep's launcher sets.
    proc = run_script(changed, "--max_iters=4", "--eval_interval=2", "--lr-schedule", "wsd_sqrt",
                      env={**torchrun, "SCHEDSWEEP_DEVICE": "cpu", "SCHEDSWEEP_DIST_BACKEND": "gloo",
                           "MASTER_PORT": "29731"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.findall(r"step (\d+):", proc.stdout) == ["0", "2", "4"]


def sweep_config(tmp: Path, name: str, script: Path, **over) -> dict:
    cfg = {
        "name": name,
        "script": {"path": str(script), "horizon_steps": HORIZON, "timeout_s": 180,
                   "args": [*SMALL, "--max_iters={horizon_steps}", f"--eval_interval={EVERY}", "--out_dir={run_dir}/out"],
                   "env": {"OMP_NUM_THREADS": "1"}},
        "search_space": "wsd", "seeds": [0, 1],
        "storage": str(tmp / "sweeps"),
        "optuna": {"storage": f"sqlite:///{tmp}/optuna-{name}.db", "seed": 0},
        "max_concurrent_trials": 1,
    }
    cfg.update(over)
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def sweep_cli(tmp: Path, *argv: str) -> str:
    """`sweep ARGV` as a user runs it, in `tmp`; its whole output, after asserting it succeeded."""
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", *argv], cwd=tmp, capture_output=True, text=True,
                          env={**ray_env(tmp), "PYTHONPATH": str(REPO)}, timeout=900, start_new_session=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_the_changed_double_swept_with_2_workers_and_predicted_rungs_survives_a_kill(tmp_path: Path) -> None:
    script = make_double(tmp_path / "nanogpt", True)
    sweep_config(tmp_path, "dbl", script, baselines=["nanogpt_cosine"], budget=1,
                 scheduler={"grace_period": 16, "reduction_factor": 2, "rung_metric": "predicted"},
                 resources={"workers": 2, "cpus_per_worker": 0.5})
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    sweep_dir = tmp_path / "sweeps" / "dbl"

    def some_results() -> bool:  # the baseline group well under way
        return any(len(t["results"]) >= 2 for t in read_trials(sweep_dir / "tune")) if (sweep_dir / "tune").exists() else False

    run_and_kill_when(["run", str(tmp_path / "dbl.yaml")], tmp_path, env, tmp_path / "first.log", some_results,
                      timeout_s=400, poll_s=0.2, what="two group results")
    out = sweep_cli(tmp_path, "resume", "dbl", "--storage", str(tmp_path / "sweeps"))
    assert not IGNORED.search(out) and not IGNORED.search((tmp_path / "first.log").read_text()), out[-4000:]

    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 2
    baseline = next(t for t in trials if t["config"].get("baseline"))
    for t in trials:
        check_group_results(t["results"], [0, 1])  # no result sent twice across the kill
    assert baseline["results"][-1]["status"] == "finished" and baseline["results"][-1]["step"] == HORIZON
    # MLflow holds the whole history across the kill (Tune's result.json of a restored trial starts again):
    # every eval of every seed run once, nanoGPT's eval at step 0 included, and a finite predicted rung_loss
    # at the rung (step 16: the fit needs 4 points after step 0), though the curve starts at step 0.
    client = MlflowClient(f"sqlite:///{sweep_dir}/mlflow.db")
    exp = client.get_experiment_by_name("dbl")
    runs = client.search_runs([exp.experiment_id], f"tags.`schedsweep.group` = '{baseline['id']}'")
    seed_runs = [r for r in runs if r.data.tags.get("schedsweep.kind") == "seed"]
    (group_run,) = [r for r in runs if r.data.tags.get("schedsweep.kind") == "group"]
    assert len(seed_runs) == 2
    for run in seed_runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == list(range(0, HORIZON + 1, EVERY)), steps
    rung = {m.step: m.value for m in client.get_metric_history(group_run.info.run_id, "rung_loss")}
    assert math.isfinite(rung.get(16, math.nan)), rung  # MLflow drops a NaN: a missing step is a failed fit
    for r in baseline["results"]:
        values = [s["val_loss"] for s in r["per_seed"].values()]
        assert len(set(values)) == 2, r  # the seeds differ: hook.seed reached torch.manual_seed
        assert all(s["seed_read"] == 1.0 and s["schedule_read"] == 1.0 for s in r["per_seed"].values())
    # At most script.keep_checkpoints (2) per seed run, the latest at the horizon.
    for seed in (0, 1):
        ckpts = sorted((sweep_dir / "train" / f"{baseline['id']}-seed{seed}").glob("step_*"))
        assert 1 <= len(ckpts) <= 2 and ckpts[-1].name == f"step_{HORIZON:08d}", ckpts
        assert (ckpts[-1] / "ckpt.pt").exists()
    # No scratch left on the node: the baseline's runs finished and removed theirs; the killed start's runs and
    # a group ASHA stopped were torn down before they could, and a later seed run or the sweep's end removed
    # what they left (trainable.scratch).
    root = Path(env["RAY_TMPDIR"]) / "schedsweep-scratch"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
    assert not left, left


@pytest.mark.ray
@pytest.mark.slow
def test_the_unchanged_double_through_its_printed_lines_is_caught_ignoring_seed_and_schedule(tmp_path: Path) -> None:
    script = make_double(tmp_path / "nanogpt", False)
    sweep_config(tmp_path, "raw", script, baselines=["nanogpt_cosine", "wsd_sqrt"], budget=0,
                 scheduler={"grace_period": 8, "reduction_factor": 2, "rung_metric": "raw"},
                 resources={"workers": 1, "cpus_per_worker": 0.5})
    cfg = yaml.safe_load((tmp_path / "raw.yaml").read_text())
    cfg["script"]["metrics_regex"] = NANOGPT_LINE
    (tmp_path / "raw.yaml").write_text(yaml.safe_dump(cfg))
    out = sweep_cli(tmp_path, "run", str(tmp_path / "raw.yaml"))
    trials = read_trials(tmp_path / "sweeps" / "raw" / "tune")
    assert len(trials) == 2 and all(t["results"][-1]["status"] == "finished" for t in trials)
    warnings = [line for line in out.splitlines() if IGNORED.search(line)]
    kinds = sorted(IGNORED.search(line).groups() for line in warnings)
    ids = sorted(t["id"] for t in trials)
    # Once per group and kind, however many results showed it.
    assert kinds == sorted([(i, k) for i in ids for k in ("schedule ignored", "seed ignored")]), warnings
    # The report names the cause and calls nothing.
    report = (tmp_path / "sweeps" / "raw" / "report.md").read_text()
    assert "the trainer ignores its seed" in report or "the script ignores its seed" in report, report[:3000]
    assert "no verdict" in report and not re.search(r"\|\s*(better|worse)\s*\|", report), report[:4000]
    # The script never imported the hook: no flags either way, only the numbers spoke. (And it ran at all
    # because one worker sees no torchrun variables: its DDP branch would have asked for NCCL and died.)
    assert all("seed_read" not in s for t in trials for r in t["results"] for s in r["per_seed"].values())


@pytest.mark.ray
@pytest.mark.slow
def test_the_changed_double_swept_with_one_worker_and_raw_rungs(tmp_path: Path) -> None:
    # One worker: no torchrun variables, so the script takes its single-process branch on --device=cpu.
    script = make_double(tmp_path / "nanogpt", True)
    sweep_config(tmp_path, "one", script, baselines=["wsd_sqrt"], budget=1,
                 scheduler={"grace_period": 8, "reduction_factor": 2, "rung_metric": "raw"},
                 resources={"workers": 1, "cpus_per_worker": 0.5})
    out = sweep_cli(tmp_path, "run", str(tmp_path / "one.yaml"))
    assert not IGNORED.search(out), out[-4000:]
    trials = read_trials(tmp_path / "sweeps" / "one" / "tune")
    assert len(trials) == 2
    baseline = next(t for t in trials if t["config"].get("baseline"))
    assert baseline["results"][-1]["status"] == "finished" and baseline["results"][-1]["step"] == HORIZON
    for t in trials:
        check_group_results(t["results"], [0, 1])
        for r in t["results"]:
            assert r["rung_loss"] == pytest.approx(r["val_loss"])  # raw: the mean val loss itself
            assert all(s["seed_read"] == 1.0 and s["schedule_read"] == 1.0 for s in r["per_seed"].values())
        # The LR followed the group's shape: the multiplier the script logged is the shape's at each step.
        shape = schedule_from_dict(t["config"]["schedule"])
        for r in t["results"][1:]:
            assert r["lr_multiplier"] == pytest.approx(shape.multiplier(min(r["step"], HORIZON - 1), HORIZON))
