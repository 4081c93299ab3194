"""Checkpoints, resume and stop for external scripts, on real Ray Train runs (2 workers, gloo) without Tune.

* A script that checkpoints through the hook and crashes is restarted by Ray Train (max_failures=1) and gets
  its latest reported checkpoint back from `hook.resume_checkpoint()`; it continues from there, after saying
  again every report up to that checkpoint (the run's report history, which its checkpoints carry).
* The same run started again after it finished says its reports again without launching the script.
* A set StopSignal ends the run with RunStopped and kills the script's whole process group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

REPO = Path(__file__).resolve().parents[3]

SCRIPT = r'''
import os, subprocess, sys, time
from pathlib import Path
from trainable import hook

case, rank = os.environ["CASE"], int(os.environ["RANK"])
if case == "explode":
    sys.exit(5)  # must never run: a finished run repeats its final report instead
if case == "stop":
    child = subprocess.Popen(["sleep", "600"])
    Path(os.environ["PIDS"]).joinpath(f"rank{rank}").write_text(f"{os.getpid()} {child.pid}")
    while True:
        print("training ...", flush=True)  # a print-only script: nothing holds it at a report
        Path(os.environ["PIDS"]).joinpath(f"beat{rank}").write_text(repr(time.time()))
        time.sleep(0.1)
if rank != 0:
    sys.exit(0)
resume = hook.resume_checkpoint()
start = int(Path(resume, "state.txt").read_text()) if resume else 0
ckpt = Path(sys.argv[1])
for step in range(start + 4, 13, 4):
    ckpt.mkdir(parents=True, exist_ok=True)
    Path(ckpt, "state.txt").write_text(str(step))
    hook.report(step=step, val_loss=10.0 - step, resumed_from=start, checkpoint=ckpt)
    if step == 8 and not resume:
        sys.exit(7)  # crash once, after a checkpointed report
'''

DRIVER = r'''
import json, os, sys, threading, time
from pathlib import Path
import ray, ray.train
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback
from sweep.engine.ray_session import init_ray
from trainable.ray_trainable import train_worker
from trainable.run_control import StopSignal

tmp, script = Path(sys.argv[1]), sys.argv[2]
init_ray()

class RecordSteps(UserCallback):
    """In the run's controller: every reported step, appended to a file (what a group trial would hear)."""
    def __init__(self, path):
        self.path = path
    def after_report(self, run_context, metrics, checkpoint):
        with open(self.path, "a") as f:
            f.write(f"{metrics[0]['step']}\n")

def fit(name, case, stop=None, max_failures=0):
    config = {"backend": "script", "schedule": {"preset": "constant"}, "seed": 0, "scratch_dir": str(tmp / "scratch"),
              "stop_signal": stop, "script": {"path": script, "horizon_steps": 12, "args": ["{run_dir}/ckpt"],
              "env": {"CASE": case, "PIDS": str(tmp)}, "metrics_regex": None, "timeout_s": 60}}
    trainer = TorchTrainer(train_worker, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name=name, storage_path=str(tmp / "train"),
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures),
                                       callbacks=[RecordSteps(str(tmp / f"steps-{case}"))]))
    try:
        result = trainer.fit()
        return {"metrics": result.metrics, "error": None}
    except Exception as err:
        return {"metrics": None, "error": repr(err)}

out = {"resume": fit("resume", "resume", max_failures=1), "again": fit("resume", "explode")}
stop = StopSignal.remote()

def set_when_started():
    # Stop only once both ranks' scripts have written their pids: the test then checks that they were killed.
    while not all((tmp / f"rank{r}").exists() for r in (0, 1)):
        time.sleep(0.2)
    stop_at.append(time.time())
    ray.get(stop.set.remote())

stop_at = []
threading.Thread(target=set_when_started, daemon=True).start()
out["stop"] = fit("stop", "stop", stop=stop)
out["stop_at"] = stop_at[0]
print("RESULT " + json.dumps(out))
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is itself gone) counts as ended.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_resume_from_hook_checkpoint_repeat_final_and_stop(tmp_path: Path) -> None:
    script, driver = tmp_path / "ckpt_train.py", tmp_path / "driver.py"
    script.write_text(SCRIPT)
    driver.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(driver), str(tmp_path), str(script)], cwd=tmp_path,
                          env={**ray_env(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT "):])

    resumed = out["resume"]
    assert resumed["error"] is None, resumed
    m = resumed["metrics"]
    # The first attempt crashed after its checkpointed report at step 8; the restart continued from there.
    assert m["step"] == 12 and m["resumed_from"] == 8 and m["final"] and m["status"] == "finished"
    ckpts = sorted(p.name for p in (tmp_path / "train" / "resume").glob("step_*"))
    assert ckpts[-1] == "step_00000012"
    assert (tmp_path / "train" / "resume" / ckpts[-1] / "state.txt").read_text() == "12"

    # What the run reported, in order: steps 4 and 8, the crash, then steps 4 and 8 again (the history in the
    # step-8 checkpoint, said again so a group that had not yet formed them still can), then step 12.
    assert (tmp_path / "steps-resume").read_text().split() == ["4", "8", "4", "8", "12"]

    again = out["again"]
    assert again["error"] is None, again  # the script (which would exit 5) was not launched again
    assert again["metrics"]["step"] == 12 and again["metrics"]["status"] == "finished"
    assert (tmp_path / "steps-explode").read_text().split() == ["4", "8", "12"]  # the whole history, again

    stopped = out["stop"]
    assert stopped["error"] is not None and "RunStopped" in stopped["error"], stopped
    for rank in (0, 1):
        pid, child = map(int, (tmp_path / f"rank{rank}").read_text().split())
        assert not alive(pid) and not alive(child), (rank, pid, child)
        # Terminated about a second after the stop (the launcher polls every 0.5 s; 5 s allows for a loaded CI
        # machine), not at its next eval or whenever: a script that only prints is never held at a report.
        trained_on = float((tmp_path / f"beat{rank}").read_text()) - out["stop_at"]
        print(f"rank {rank} trained on for {trained_on:.2f} s after the stop")
        assert trained_on < 5.0, (rank, trained_on)
    # A run that ended as it should (finished after its restart, or stopped) leaves no scratch behind: the
    # script's files, staged checkpoints, reports and logs were removed on every rank.
    assert not (tmp_path / "scratch" / "resume").exists(), sorted((tmp_path / "scratch").rglob("*"))
    assert not (tmp_path / "scratch" / "stop").exists(), sorted((tmp_path / "scratch").rglob("*"))
