"""The hook API scripts import (`trainable.hook`), its report channel, the metrics-line parser and the
launcher's decisions. No Ray here: the Ray tests are in tests/sweep/engine/test_external_sweep.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from search_spaces import schedule_from_dict
from trainable import hook
from trainable.external import channel
from trainable.external.launcher import final_status, judge
from trainable.external.metrics_parser import MetricsLineParser

REPO = Path(__file__).resolve().parents[2]
SEED003_REGEX = (r"TRAIN_METRICS: step=(?P<step>\d+), train_loss=(?P<train_loss>[^,\s]+), "
                 r"val_loss=(?P<val_loss>[^,\s]+)")


def run_py(code: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.fixture
def sweep_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the launcher gives rank 0 of a run."""
    monkeypatch.setenv(channel.ENV_SCHEDULE, json.dumps({"preset": "wsd_sqrt", "cooldown_frac": 0.3}))
    monkeypatch.setenv(channel.ENV_HORIZON, "100")
    monkeypatch.setenv(channel.ENV_SEED, "7")
    monkeypatch.setenv(channel.ENV_REPORT_FILE, str(tmp_path / "reports.jsonl"))
    monkeypatch.setenv(channel.ENV_STAGE_DIR, str(tmp_path / "stage"))
    monkeypatch.setenv("RANK", "0")
    (tmp_path / "stage").mkdir()
    channel.write_ack(tmp_path / "reports.jsonl", 10**6)  # as if a launcher had relayed everything already
    return tmp_path


def test_importing_the_hook_loads_neither_torch_nor_ray() -> None:
    proc = run_py("import sys; from trainable import hook; print(sorted(m for m in ('torch', 'ray', 'numpy') "
                  "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_multiplier_follows_the_sweeps_shape_and_horizon(sweep_env: Path) -> None:
    shape = schedule_from_dict({"preset": "wsd_sqrt", "cooldown_frac": 0.3})
    assert [hook.lr_multiplier(s) for s in range(100)] == [shape.multiplier(s, 100) for s in range(100)]
    # The sweep's horizon wins over the script's own step count; steps past the end keep the last value.
    assert hook.lr_multiplier(50, total_steps=400) == shape.multiplier(50, 100)
    assert hook.lr_multiplier(150) == shape.multiplier(99, 100)
    assert hook.lr_multiplier_at_fraction(0.0) == shape.multiplier(0, 2)
    assert hook.lr_multiplier_at_fraction(1.0) == shape.multiplier(1, 2)
    assert hook.lr_multiplier_at_fraction(0.5) == pytest.approx(1.0)  # mid-run of a WSD shape: the plateau
    assert hook.seed() == 7 and hook.in_sweep()


def test_alone_the_shape_comes_from_the_flag_which_the_script_never_sees() -> None:
    code = ("import sys; from trainable import hook; "
            "print(hook.lr_multiplier(9, 10), hook.lr_multiplier(0, 10), sys.argv[1:], hook.in_sweep())")
    proc = run_py(code, "--lr-schedule", "linear_to_zero", "--keep", "1")
    assert proc.returncode == 0, proc.stderr
    expected = schedule_from_dict({"preset": "linear_to_zero"})
    assert proc.stdout.split()[:2] == [str(expected.multiplier(9, 10)), str(expected.multiplier(0, 10))]
    assert "['--keep', '1'] False" in proc.stdout
    proc = run_py(code, env={channel.ENV_SCHEDULE: '{"warmup_frac": 0.0, "shape": "linear", "floor": 0.5}'})
    assert proc.stdout.split()[:2] == ["0.5", "1.0"], proc.stderr
    proc = run_py("from trainable import hook; hook.lr_multiplier(0, 10)")
    assert proc.returncode != 0 and "--lr-schedule" in proc.stderr and "SCHEDSWEEP_SCHEDULE" in proc.stderr


def test_report_on_rank_0_snapshots_the_checkpoint(sweep_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = sweep_env / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.bin").write_text("step 10")
    hook.lr_multiplier(9)
    assert hook.report(step=10, val_loss=3.5, train_loss=3.6, tokens=1280, checkpoint=ckpt)
    (ckpt / "model.bin").write_text("step 20")  # the script overwrites its folder after reporting
    monkeypatch.setenv("RANK", "1")
    assert not hook.report(step=10, val_loss=9.0)  # other ranks: a no-op
    (rec,) = channel.ReportReader(sweep_env / "reports.jsonl").read_new()
    assert rec["step"] == 10 and rec["val_loss"] == 3.5 and rec["train_loss"] == 3.6 and rec["tokens"] == 1280
    assert rec["lr_multiplier"] == hook.lr_multiplier(9)
    assert Path(rec["checkpoint"]).parent == sweep_env / "stage"
    assert (Path(rec["checkpoint"]) / "model.bin").read_text() == "step 10"
    with pytest.raises(TypeError, match="val_loss"):
        monkeypatch.setenv("RANK", "0")
        hook.report(step=1, val_loss="low")


def test_reports_say_whether_the_seed_and_the_schedule_were_read(tmp_path: Path) -> None:
    # A fresh process per case: what was read is the process's own history.
    env = {channel.ENV_SCHEDULE: "wsd_sqrt", channel.ENV_HORIZON: "10", channel.ENV_SEED: "3", "RANK": "0",
           channel.ENV_REPORT_FILE: str(tmp_path / "r.jsonl"), "SCHEDSWEEP_RELAY_WAIT_S": "0"}
    for code in ("hook.report(step=5, val_loss=1.0)",
                 "hook.seed(1337); hook.report(step=5, val_loss=1.0)",
                 "hook.seed(1337); hook.lr_multiplier(4); hook.report(step=5, val_loss=1.0)"):
        proc = run_py("from trainable import hook; " + code, env=env)
        assert proc.returncode == 0, proc.stderr
    records = channel.ReportReader(tmp_path / "r.jsonl").read_new()
    assert [(r[channel.SEED_READ], r[channel.SCHEDULE_READ]) for r in records] == [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]


def test_device_and_backend_come_from_the_sweep_else_the_scripts_own() -> None:
    code = "from trainable import hook; print(hook.device('cuda:1'), hook.dist_backend('nccl'))"
    assert run_py(code).stdout.split() == ["cuda:1", "nccl"]  # alone: what the script asked for
    env = {channel.ENV_DEVICE: "cpu", channel.ENV_DIST_BACKEND: "gloo"}
    assert run_py(code, env=env).stdout.split() == ["cpu", "gloo"]  # a CPU worker of a sweep


def test_report_returns_once_the_launcher_has_relayed_it(sweep_env: Path) -> None:
    path = sweep_env / "reports.jsonl"
    channel.write_ack(path, hook._sent)  # everything before this report was relayed, this one not yet

    def relay() -> None:
        time.sleep(0.5)
        channel.write_ack(path, hook._sent)

    threading.Thread(target=relay).start()
    t0 = time.monotonic()
    assert hook.report(step=4, val_loss=1.0)
    assert time.monotonic() - t0 >= 0.45


def test_report_file_reader_takes_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    reader = channel.ReportReader(path)
    assert reader.read_new() == []  # no file yet
    channel.write_record(path, {"step": 1, "val_loss": 2.0})
    with open(path, "a") as fh:
        fh.write('{"step": 2, "val_lo')
    assert [r["step"] for r in reader.read_new()] == [1]
    with open(path, "a") as fh:
        fh.write('ss": NaN}\n')
    (rec,) = reader.read_new()
    assert rec["step"] == 2 and math.isnan(rec["val_loss"])


def test_metrics_parser_reads_seed_003_lines() -> None:
    parser = MetricsLineParser(SEED003_REGEX)
    assert parser.parse("TRAIN_METRICS: step=8000, train_loss=2.6885, val_loss=2.4088") == {
        "step": 8000, "train_loss": 2.6885, "val_loss": 2.4088}
    assert parser.parse("[rank0] TRAIN_METRICS: step=9, train_loss=nan, val_loss=inf")["val_loss"] == math.inf
    assert parser.parse("iter 8000: loss 2.6885") is None
    assert parser.parse("TRAIN_METRICS: step=8000, train_loss=abc, val_loss=2.4") is None


def state(code=None, idle=0.0, tail=("hello",), stderr=()) -> dict:
    return {"exit_code": code, "idle_s": idle, "tail": list(tail), "stderr_tail": list(stderr), "log": "/x/rank.log"}


def test_launcher_decisions_name_the_script_and_show_the_output() -> None:
    kw = dict(script="/a/train.py", horizon=12, timeout_s=30.0, reported=1, last_step=4)
    assert judge([state(), state()], **kw) == ("continue", "")
    action, msg = judge([state(), state(code=3, stderr=["Traceback", "ValueError: boom"])], **kw)
    assert action == "fail" and "train.py exited with code 3 on rank 1" in msg and "ValueError: boom" in msg
    assert "killed by SIGKILL" in judge([state(code=-9), state()], **kw)[1]
    action, msg = judge([state(code=0), state()], **{**kw, "reported": 0, "last_step": None})
    assert action == "fail" and "without reporting any metrics" in msg
    assert "at step 4, before the horizon (12 steps)" in judge([state(code=0), state(code=0)], **kw)[1]
    # Timeout: only when every rank has been silent that long.
    assert judge([state(idle=31.0), state(idle=2.0)], **kw)[0] == "continue"
    action, msg = judge([state(idle=31.0, tail=["epoch 1", "waiting"]), state(idle=40.0)], **kw)
    assert action == "fail" and "no output and no report for 31 s" in msg and "waiting" in msg
    assert judge([state(idle=1e6)], **{**kw, "timeout_s": None})[0] == "continue"


def test_the_last_report_is_at_the_horizon_or_a_divergence() -> None:
    assert final_status({"step": 8, "val_loss": 2.0}, 12) is None
    assert final_status({"step": 12, "val_loss": 2.0}, 12) == "finished"
    assert final_status({"step": 4, "val_loss": 2.0, "train_loss": math.nan}, 12) == "diverged"
