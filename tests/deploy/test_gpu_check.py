"""`benchmarks/gpu_check.py --dry-run`: the GPU check's every step (environment, trainer vs plain loop,
a 2-group sweep end to end, the nanoGPT-style double changed as the docs say) at tiny size on CPU, so the
script is known to work the day a GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_gpu_check_dry_run_does_every_step_and_prints_one_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["env"]["cuda"] is False
    tp = report["throughput"]
    assert tp["model"] == "tiny" and len(tp["runs"]) == 2  # alternated: plain first, then trainer first
    assert tp["trainer_tokens_per_s"] > 0 and tp["plain_tokens_per_s"] > 0
    assert tp["ratio_trainer_over_plain"] == tp["trainer_tokens_per_s"] / tp["plain_tokens_per_s"]
    sweep = report["sweep"]
    assert len(sweep["groups"]) == 2 and all(g["status"] == "finished" for g in sweep["groups"])
    assert all(0 < g["first_result_s"] <= g["total_s"] for g in sweep["groups"])
    # The docs' nanoGPT change: its DDP branch on the launcher's device and backend, then swept; the hook read.
    assert report["nanogpt"]["device"] == "cpu", report["nanogpt"]
    assert report["nanogpt"]["seed_read"] == 1.0 and report["nanogpt"]["schedule_read"] == 1.0
    # The printed summary is the same JSON, without the bulky per-run rows.
    printed = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert printed["sweep"]["wall_s"] == sweep["wall_s"] and "runs" not in printed["throughput"]


def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "use --dry-run" in proc.stderr
    assert not (tmp_path / "x.json").exists()
