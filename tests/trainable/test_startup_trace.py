"""The start-up trace that the start-up and wrapper benchmarks read (`trainable.startup_trace`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainable.startup_trace import ENV_VAR, mark, read
from trainable.train import load_config, train

REPO = Path(__file__).resolve().parents[2]


def test_a_traced_run_marks_its_start_up_and_reports_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "trace"))
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["horizon.steps=4", "eval.interval=2", "eval.max_tokens=256"])
    train(cfg)
    rows = read(tmp_path / "trace")
    assert [r["event"] for r in rows] == ["process_group_ready", "model_built", "data_ready", "first_step",
                                          "report", "report"]
    assert {r["pid"] for r in rows} == {os.getpid()}
    assert rows[0]["process_started"] < rows[0]["t"] <= time.time()
    assert [r["cpu_s"] for r in rows] == sorted(r["cpu_s"] for r in rows)
    assert rows[3]["step"] == 1
    reports = rows[4:]
    assert [(r["step"], r["final"]) for r in reports] == [(2, False), (4, True)]
    assert all(r["tokens_per_s"] > 0 for r in reports)


def test_without_the_variable_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    mark("anything", x=1)
    assert list(tmp_path.iterdir()) == []


def test_a_process_start_is_read_to_a_few_hundredths_of_a_second(tmp_path: Path) -> None:
    before = time.time()
    out = subprocess.run(
        [sys.executable, "-c", ("import time; from trainable import startup_trace as s; "
                                "s.mark('here'); print(time.time())")],
        env={**os.environ, ENV_VAR: str(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        check=True)
    after = float(out.stdout)
    (row,) = read(tmp_path)
    # The child starts after `before` and has imported Python and torch-free modules before it marks.
    assert before - 0.05 <= row["process_started"] <= row["t"] <= after
