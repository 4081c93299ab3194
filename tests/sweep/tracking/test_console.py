"""What the terminal shows during a sweep: a live table on a terminal, plain lines elsewhere, the reason of a
failed group, and nothing of Ray's own output unless --verbose (Ray's and Tune's lines go to sweep.log)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sweep.tracking.progress import SweepProgress, error_reason

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
CONTROL = re.compile(r"\x1b\[")
WSD = {"warmup_frac": 0.02, "hold_frac": 0.7, "floor": 0.1}


def _trial(tid: str, status: str = "RUNNING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"schedule": WSD, "seeds": [0, 1]}, status=status,
                           last_result={}, error_file=None, local_path=None)


def _drive(progress: SweepProgress) -> None:
    a, b = _trial("g-a"), _trial("g-b", "PENDING")
    progress.setup()
    progress.on_trial_start(0, [a, b], a)
    for step in (100, 200):
        progress.on_trial_result(0, [a, b], a, {"step": step, "val_loss": 3.5 - step / 1000, "tokens_per_s": 1234.0,
                                                "per_seed": {}})


def test_on_a_terminal_the_running_groups_are_a_live_table_with_eta() -> None:
    out = io.StringIO()
    progress = SweepProgress(total_steps=1000, stream=out, live=True, print_leaderboard=False)
    _drive(progress)
    text = out.getvalue()
    progress.on_experiment_end([])
    assert CONTROL.search(text)  # drawn in place
    plain = CONTROL.sub("", text)
    for expected in ("group", "eta", "g-a", "200/1000", "3.3000", "wsd: warmup 2% lin, hold 68%, cos -> 0.1",
                     "start  g-a"):
        assert expected in plain, (expected, plain)
    assert progress._live is None  # stopped at the end, before the leaderboard


def test_elsewhere_plain_lines_without_control_codes() -> None:
    out = io.StringIO()
    progress = SweepProgress(total_steps=1000, stream=out, interval_s=0.0, print_leaderboard=False)
    _drive(progress)  # a StringIO is not a terminal: no live view
    text = out.getvalue()
    assert not CONTROL.search(text), text
    assert "g-a step 200/1000  val_loss 3.3000  tok/s 1234  eta " in text and "groups: 1 pending, 1 running" in text


def test_a_failed_group_prints_its_reason_and_where_the_trace_is(tmp_path: Path) -> None:
    err = tmp_path / "error.txt"
    err.write_text("Failure # 1\nTraceback (most recent call last):\n  File x\nRuntimeError: seed 0 of trial t "
                   "failed: WorkerGroupError('Training failed:\\n  File y\\nlauncher.ScriptError: script train.py "
                   "exited with code 1 on rank 0 (log /s/rank0.log); last stderr lines:\\n    AssertionError\\n')\n")
    trial = _trial("g-x", "ERROR")
    trial.error_file = str(err)
    assert error_reason(trial).startswith("launcher.ScriptError: script train.py exited with code 1 on rank 0 "
                                          "(log /s/rank0.log)")
    out = io.StringIO()
    progress = SweepProgress(stream=out, print_leaderboard=False)
    progress.on_trial_error(0, [trial], trial)
    assert "failed g-x (wsd: warmup 2% lin" in out.getvalue() and f"trace: {err}" in out.getvalue()
    trial.error_file = None
    assert "no error text" in error_reason(trial)


# Ray's own lines that used to flood the terminal (worker prints, Tune's boxes and hints, start-up).
RAY_NOISE = ("Started a local Ray instance", "Configuration for experiment", "View detailed results here",
             "tensorboard", "Token authentication", "(TrainController", "(group_trial", "INFO ")


@pytest.mark.ray
@pytest.mark.slow
def test_the_terminal_shows_only_the_sweeps_lines_unless_verbose(tmp_path: Path) -> None:
    cfg = {"name": "quiet", "simulator": {"law": "mpl_25m", "total_steps": 1000, "eval_interval": 250},
           "search_space": "wsd", "baselines": ["wsd_sqrt"], "seeds": [0, 1], "budget": 1,
           "scheduler": {"grace_period": 250, "reduction_factor": 2}, "storage": str(tmp_path / "sweeps")}
    (tmp_path / "quiet.yaml").write_text(yaml.safe_dump(cfg))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("RAY_DEDUP_LOGS")  # Ray's default, as a user runs it: deduplication holds some warnings until exit

    def run(*argv: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "sweep.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600, start_new_session=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    quiet = run("run", str(tmp_path / "quiet.yaml"))
    noise = [n for n in RAY_NOISE if n in quiet]
    assert not noise, (noise, quiet)
    assert not CONTROL.search(quiet)  # not a terminal: plain lines
    assert "start  " in quiet and "Leaderboard" in quiet and "Verdicts" in quiet
    log = tmp_path / "sweeps" / "quiet" / "sweep.log"
    assert f"Ray and Tune : {log}" in quiet and "Started a local Ray instance" in log.read_text()
    # --verbose brings Ray's and Tune's lines back to the terminal.
    loud = run("run", str(tmp_path / "quiet.yaml"), "--overwrite", "--verbose")
    assert "Started a local Ray instance" in loud and "Configuration for experiment" in loud
    assert "Ray and Tune :" not in loud
