"""Scripts that never import the hook: a print-only script swept through `script.metrics_regex`, and scripts
that crash, hang past `script.timeout_s` or print nothing. One sweep on real Ray (2 workers per seed run);
the test script picks its behaviour from the group's baseline preset (in SCHEDSWEEP_SCHEDULE), so the four
cases run as four groups of one sweep, and the sweep must go on past the three failures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking.tags import TAG_GROUP, TAG_KIND, TAG_STATUS

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_external_sweep import run_sweep_cli  # noqa: E402
from test_hook import SEED003_REGEX  # noqa: E402
from test_seed_groups import read_trials  # noqa: E402

# The test's "training script": prints seed 003's metric lines, or fails in one of three ways.
SCRIPT = r'''
import json, os, sys, time

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
assert world == 2 and os.environ["LOCAL_RANK"] == str(rank) and os.environ["MASTER_PORT"].isdigit()
case = json.loads(os.environ["SCHEDSWEEP_SCHEDULE"])["preset"]
steps = int(sys.argv[sys.argv.index("--steps") + 1])
seed = int(sys.argv[sys.argv.index("--seed") + 1])

if case == "constant":  # well-behaved, print-only
    for step in (4, 8, 12):
        loss = 3.0 - step / steps + 0.25 * seed
        if rank == 0:
            print(f"iter {step}: lr ok", flush=True)
            print(f"TRAIN_METRICS: step={step}, train_loss={loss + 0.1:.4f}, val_loss={loss:.4f}", flush=True)
        time.sleep(0.3)
elif case == "linear_to_zero":  # rank 1 crashes after rank 0's first report
    if rank == 0:
        print("TRAIN_METRICS: step=4, train_loss=2.9, val_loss=2.8", flush=True)
    else:
        time.sleep(1.0)
        print("RuntimeError: simulated out of memory on rank 1", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(600)
elif case == "wsd_sqrt":  # hangs after one line
    if rank == 0:
        print("loading shards ...", flush=True)
    time.sleep(600)
# nanogpt_cosine: exits at once, silent
'''


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_print_only_script_is_parsed_and_failing_scripts_give_clear_errors(tmp_path: Path) -> None:
    script = tmp_path / "fake_train.py"
    script.write_text(SCRIPT)
    cfg = {
        "name": "fails",
        "script": {"path": str(script), "horizon_steps": 12, "args": ["--steps", "{horizon_steps}", "--seed", "{seed}"],
                   "metrics_regex": SEED003_REGEX, "timeout_s": 8},
        "search_space": "wsd",
        "baselines": ["constant", "linear_to_zero", "wsd_sqrt", "nanogpt_cosine"],
        "seeds": [0, 1],
        "budget": 0,
        "scheduler": {"enabled": False},
        # The scripts barely compute: 1 CPU per group lets two groups run at once on a 2-CPU machine.
        # These scripts fail by design and would fail the same way on every restart: no retries here (restarts
        # after a dead worker are tested in test_worker_fault.py).
        "resources": {"workers": 2, "cpus_per_worker": 0.25, "max_failures": 0},
        "max_concurrent_trials": 2,
        "storage": str(tmp_path / "sweeps"),
    }
    proc = run_sweep_cli(tmp_path, cfg)
    out = proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.returncode == 1, out  # groups errored, and the sweep still ran every group
    assert "4 groups (3 errored)" in proc.stdout, out

    sweep_dir = tmp_path / "sweeps" / "fails"
    trials = {t["config"]["schedule"]["preset"]: t for t in read_trials(sweep_dir / "tune")}
    assert set(trials) == {"constant", "linear_to_zero", "wsd_sqrt", "nanogpt_cosine"}
    good = trials["constant"]["results"]
    assert [r["step"] for r in good] == [4, 8, 12] and good[-1]["status"] == "finished"
    assert good[-1]["val_loss"] == pytest.approx((2.0 + 2.25) / 2)  # mean over seeds 0 and 1 of the printed values
    assert good[0]["train_loss"] == pytest.approx(3.0 - 4 / 12 + 0.1 + 0.125, abs=1e-3)

    errors = {case: (t["dir"] / "error.txt").read_text() for case, t in trials.items() if case != "constant"}
    assert "fake_train.py exited with code 3 on rank 1" in errors["linear_to_zero"]
    assert "simulated out of memory" in errors["linear_to_zero"]
    assert "fake_train.py produced no output and no report" in errors["wsd_sqrt"]
    assert "script.timeout_s = 8" in errors["wsd_sqrt"] and "loading shards" in errors["wsd_sqrt"]
    assert "fake_train.py exited with code 0 without reporting any metrics" in errors["nanogpt_cosine"]
    # The terminal names each failure's reason (and where its trace is), not only Ray's error file.
    failed = [line for line in proc.stdout.splitlines() if "] failed " in line]
    assert len(failed) == 3, proc.stdout[-4000:]
    for reason in ("fake_train.py exited with code 3 on rank 1", "fake_train.py produced no output and no report",
                   "fake_train.py exited with code 0 without reporting any metrics"):
        assert sum(reason in line for line in failed) == 1, (reason, failed)

    client = MlflowClient(f"sqlite:///{sweep_dir}/mlflow.db")
    exp = client.get_experiment_by_name("fails")
    groups = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(TAG_KIND) == "group"]
    status = {r.data.tags[TAG_GROUP]: (r.data.tags[TAG_STATUS], r.info.status) for r in groups}
    for case, t in trials.items():
        tid = t["id"] or t["dir"].name.split("_")[2]  # group_trial_<id>_<index>_...: also without results
        assert status[tid] == (("finished", "FINISHED") if case == "constant" else ("error", "FAILED")), (case, status)
