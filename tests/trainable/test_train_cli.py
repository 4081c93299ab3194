"""The command lines: `torchrun -m trainable.train --config configs/tiny.yaml` and `sweep train`, for real,
on the bundled corpus (2 gloo ranks on CPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^step (\d+)/(\d+) \| train_loss (\S+) \| val_loss (\S+) \| val_bpb (\S+) \|")

pytestmark = pytest.mark.ddp


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _eval_lines(stdout: str) -> list[tuple[int, int, float, float, float]]:
    out = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            step, total, train, val, bpb = m.groups()
            out.append((int(step), int(total), float(train), float(val), float(bpb)))
    return out


def test_torchrun_tiny_config_learns_and_reports_bpb() -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "trainable.train", "--config", "configs/tiny.yaml"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = _eval_lines(proc.stdout)
    assert [e[0] for e in evals] == [15, 30, 45, 60] and all(e[1] == 60 for e in evals)
    first, last = evals[0], evals[-1]
    assert last[3] < first[3] - 0.3  # val loss falls
    assert all(0 < e[4] < 10 for e in evals)  # val_bpb present and plausible for English text
    assert "done: status finished after 60/60 steps" in proc.stdout


def test_sweep_train_runs_the_packaged_default_from_any_directory(tmp_path: Path) -> None:
    # A very short run, from a folder with no configs/ in it: the default config ships in the package.
    cmd = [sys.executable, "-m", "sweep.cli", "train", "--nproc", "1",
           "--set", "horizon.steps=3", "--set", "eval.interval=3", "--set", "eval.max_tokens=512",
           "--set", f"checkpoint.dir={tmp_path / 'ckpt'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = _eval_lines(proc.stdout)
    assert [e[0] for e in evals] == [3]
    assert "done: status finished after 3/3 steps" in proc.stdout
    assert (tmp_path / "ckpt" / "step_00000003" / "meta.json").exists()
