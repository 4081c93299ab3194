"""The MLflow callback pieces the confirmation stage relies on, against a real sqlite store (no Ray cluster):
a stage's sweep run nested under its parent sweep run, and a resumed driver never logging a step twice even
when the kill fell between a batch's metrics and its last-step tag (sqlite commits them separately)."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from sweep.tracking.callback import MLflowSweepCallback
from sweep.tracking.queries import find_sweep_run
from sweep.tracking.tags import TAG_LAST_STEP


def result(step: int) -> dict:
    per_seed = {"0": {"val_loss": 5.0 - step / 1000, "step": step, "status": "running"}}
    return {"step": step, "val_loss": 5.0 - step / 1000, "status": "running", "per_seed": per_seed}


def test_stage_run_is_nested_and_a_replayed_step_is_not_logged_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = MLflowSweepCallback(uri, "exp", "s", {"name": "s"}, strict=True)
    parent.setup()
    assert find_sweep_run(uri, "exp", "s") == parent.sweep_run_id

    stage = MLflowSweepCallback(uri, "exp", "s.confirm-2x", {"name": "s.confirm-2x"}, strict=True,
                                parent_run_id=parent.sweep_run_id, stage="confirm-2x", parent_sweep="s")
    stage.setup()
    trial = SimpleNamespace(trial_id="g1", config={"schedule": {"preset": "constant"}, "baseline": None,
                                                   "seeds": [0], "source_group": "abc"})
    stage.on_trial_start(0, [], trial)
    for step in (250, 500):
        stage.on_trial_result(0, [], trial, result(step))

    client = MlflowClient(uri)
    run = client.get_run(stage.sweep_run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.sweep_run_id
    assert run.data.tags["schedsweep.stage"] == "confirm-2x" and run.data.tags["schedsweep.parent_sweep"] == "s"
    seed_run = stage._runs[("seed", "g1", "0")]
    assert client.get_run(seed_run).data.params["source_group"] == "abc"

    # A store logged by an older version, which also wrote a last-step tag, whose driver died after step 500's
    # metrics were committed but before that tag was: the tag says 250, the metrics 500.
    client.set_tag(seed_run, TAG_LAST_STEP, "250")
    resumed = pickle.loads(pickle.dumps(stage))  # what Tuner.restore brings back
    resumed.setup()
    for step in (500, 750):  # the restored trial replays 500 from its last checkpoint
        resumed.on_trial_result(0, [], trial, result(step))
    steps = [m.step for m in client.get_metric_history(seed_run, "val_loss")]
    assert steps == [250, 500, 750], steps
