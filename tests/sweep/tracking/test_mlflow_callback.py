"""MLflowSweepCallback driven hook by hook on a real sqlite MLflow store (no Ray cluster: fast).

Trials are plain objects with the attributes Tune's hooks read (`trial_id`, `config`, `last_result`,
`status`); the results follow the group-trial contract. The Tune-driven tests are in test_mlflow_tune.py.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from sweep.core.secrets import redact_uri
from sweep.tracking.callback import MLflowSweepCallback
from sweep.tracking.params import loggable_params
from sweep.tracking.pending import HeldBackWrites, TrialView, Write
from sweep.tracking.queries import groups_from_mlflow
from sweep.tracking.tags import TAG_EXPERIMENT_KIND, TAG_GROUP, TAG_KIND, TAG_STATUS, TAG_SWEEP, TRAINING_EXPERIMENT

SCHEDULE = {"warmup_frac": 0.1, "hold_frac": 0.5, "shape": "cosine", "floor": 0.1}


def _result(step: int, status: str = "running", seeds=(0, 1), loss: float = 3.0) -> dict:
    per_seed = {str(s): {"val_loss": loss + s / 100 + 1 / step, "val_bpb": 1.0, "train_loss": 3.1, "lr": 1e-3,
                         "tokens_per_s": 10.0, "step": step, "status": status, "train_run": f"t-seed{s}"}
                for s in seeds}
    return {"step": step, "val_loss": loss + 1 / step, "val_bpb": 1.0, "status": status, "per_seed": per_seed}


def _trial(tid: str, schedule=SCHEDULE, status="RUNNING", last=None):
    return SimpleNamespace(trial_id=tid, config={"schedule": schedule, "baseline": None, "seeds": [0, 1]},
                           status=status, last_result=last or {}, local_path=None)


def _callback(uri: str, **kw) -> MLflowSweepCallback:
    cb = MLflowSweepCallback(uri, "exp", "s1", {"seeds": [0, 1]}, total_steps=30, strict=True, **kw)
    cb.setup()
    return cb


def _runs(uri: str, name: str = "s1") -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exp")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{name}'")


def _kinds(runs) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.data.tags[TAG_KIND]] = out.get(r.data.tags[TAG_KIND], 0) + 1
    return out


def _started(uri: str, *results: dict):
    """A callback on `uri` with group g1 started and `results` logged, and the group's trial."""
    cb = _callback(uri)
    t = _trial("g1")
    cb.on_trial_start(iteration=0, trials=[t], trial=t)
    for i, result in enumerate(results, start=1):
        cb.on_trial_result(iteration=i, trials=[t], trial=t, result=result)
    return cb, t


def test_restored_callback_reuses_runs_and_skips_replayed_steps(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cb, t = _started(uri, _result(10), _result(20))

    # What Tuner.restore does with the callback: unpickle it, then set it up again.
    restored = pickle.loads(pickle.dumps(cb))
    restored.setup()
    restored.on_trial_start(iteration=0, trials=[t], trial=t)
    # The group resumed from its step-10 checkpoint: step 20 comes again, with other values.
    restored.on_trial_result(iteration=1, trials=[t], trial=t, result=_result(20, loss=9.0))
    last = _result(30, status="finished")
    restored.on_trial_result(iteration=2, trials=[t], trial=t, result=last)
    done = _trial("g1", status="TERMINATED", last=last)
    restored.on_trial_complete(iteration=3, trials=[done], trial=done)
    restored.on_experiment_end(trials=[done])

    runs = _runs(uri)
    assert _kinds(runs) == {"sweep": 1, "group": 1, "seed": 2}
    client = MlflowClient(uri)
    for r in runs:
        assert r.info.status == "FINISHED"
        if r.data.tags[TAG_KIND] == "seed":
            hist = client.get_metric_history(r.info.run_id, "val_loss")
            assert [m.step for m in hist] == [10, 20, 30]
            assert hist[1].value < 9.0  # the first value of step 20 stays; the replay was skipped


def test_new_sweep_with_an_old_name_gets_new_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    old = _callback(uri)
    t = _trial("g1")
    old.on_trial_start(iteration=0, trials=[t], trial=t)
    old.on_trial_result(iteration=1, trials=[t], trial=t, result=_result(10, loss=5.0))
    # `sweep run --overwrite`: a freshly built callback, same name.
    new = _callback(uri)
    t2 = _trial("g2")
    new.on_trial_start(iteration=0, trials=[t2], trial=t2)
    last = _result(30, status="finished", loss=2.0)
    new.on_trial_result(iteration=1, trials=[t2], trial=t2, result=last)
    done = _trial("g2", status="TERMINATED", last=last)
    new.on_trial_complete(iteration=2, trials=[done], trial=done)

    assert _kinds(_runs(uri)) == {"sweep": 2, "group": 2, "seed": 4}
    assert old.sweep_run_id != new.sweep_run_id
    # The leaderboard reads the latest sweep of that name only.
    groups = groups_from_mlflow(uri, "exp", "s1")
    assert [(g.group_id, g.status) for g in groups] == [("g2", "finished")]
    assert groups[0].stats("val_loss").mean == pytest.approx(2.0 + 0.005 + 1 / 30)


def test_unparsable_schedule_is_logged_raw_unless_strict(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    bad = {"shape": "no-such-shape"}
    lenient = MLflowSweepCallback(uri, "exp", "s1", {}, strict=False)
    lenient.setup()
    t = _trial("g1", schedule=bad)
    lenient.on_trial_start(iteration=0, trials=[t], trial=t)
    group = next(r for r in _runs(uri) if r.data.tags[TAG_KIND] == "group")
    assert group.data.params["schedule.shape"] == "no-such-shape"
    assert group.data.tags[TAG_STATUS] == "running" and group.data.tags[TAG_GROUP] == "g1"

    strict = MLflowSweepCallback(uri, "exp", "s2", {}, strict=True)
    strict.setup()
    with pytest.raises(Exception):
        strict.on_trial_start(iteration=0, trials=[t], trial=t)


def test_config_params_drop_secrets_and_uri_passwords():
    params = loggable_params({"mlflow": {"tracking_uri": "https://bob:hunter2@mlflow.example:5000/x",
                                         "token": "abc", "api_key": "k"},
                              "db": {"password": "pw"}, "seeds": [0, 1], "trainer": {"lr": 0.001}})
    assert params == {"mlflow.tracking_uri": "https://mlflow.example:5000/x", "seeds": "[0, 1]",
                      "trainer.lr": "0.001"}
    assert redact_uri("sqlite:///a/b.db") == "sqlite:///a/b.db"
    assert redact_uri("not a uri") == "not a uri"


def test_group_retried_after_an_error_goes_back_to_running_then_finishes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cb = _callback(uri)
    t = _trial("g1")
    cb.on_trial_start(iteration=0, trials=[t], trial=t)
    cb.on_trial_result(iteration=1, trials=[t], trial=t, result=_result(10))
    failed = _trial("g1", status="ERROR", last=_result(10))
    cb.on_trial_error(iteration=2, trials=[failed], trial=failed)
    states = {r.data.tags[TAG_KIND]: (r.info.status, r.data.tags.get(TAG_STATUS)) for r in _runs(uri)}
    assert states["group"] == ("FAILED", "error") and states["seed"] == ("FAILED", "error")

    cb.on_trial_start(iteration=3, trials=[t], trial=t)  # Tune retries the trial
    states = {r.data.tags[TAG_KIND]: (r.info.status, r.data.tags.get(TAG_STATUS)) for r in _runs(uri)}
    assert states["group"] == ("RUNNING", "running") and states["seed"] == ("RUNNING", "running")
    last = _result(20, status="finished")
    cb.on_trial_result(iteration=4, trials=[t], trial=t, result=last)
    done = _trial("g1", status="TERMINATED", last=last)
    cb.on_trial_complete(iteration=5, trials=[done], trial=done)
    runs = _runs(uri)
    assert _kinds(runs) == {"sweep": 1, "group": 1, "seed": 2}
    assert all(r.info.status == "FINISHED" for r in runs if r.data.tags[TAG_KIND] != "sweep")


def test_writes_are_held_back_in_order_only_while_the_store_does_not_answer(tmp_path, caplog):
    import logging

    done: list[str] = []
    down = {"now": False}

    def apply(w: Write) -> None:
        if w.op == "broken":
            raise ValueError("a bad write, the store answers")
        if down["now"]:
            raise ConnectionError("refused")
        done.append(w.what)

    caplog.set_level(logging.INFO, logger="sweep.tracking.pending")
    writes = HeldBackWrites(apply, lambda: not down["now"], path=None)
    writes.submit(Write("a", "log", {}))
    assert done == ["a"] and not writes and "MLflow" not in caplog.text  # no outage, nothing said

    down["now"] = True
    writes.submit(Write("b", "log", {}))
    writes.submit(Write("c", "log", {}))  # must wait behind b to keep the order
    assert done == ["a"] and [w.what for w in writes.items] == ["b", "c"]
    assert caplog.text.count("holding writes back") == 1
    down["now"] = False
    writes.submit(Write("d", "log", {}))
    assert done == ["a", "b", "c", "d"] and not writes
    assert caplog.text.count("MLflow answers again") == 1

    writes.submit(Write("e", "broken", {}))  # skipped (logged), never held back: it would block every later write
    writes.submit(Write("f", "log", {}))
    assert done[-1] == "f" and not writes and caplog.text.count("MLflow answers again") == 1


def test_writes_held_back_when_the_driver_dies_are_made_by_the_next_start(tmp_path):
    # A driver killed during an outage: its held-back writes are on disk, and the next start makes them first,
    # in order, before its own; the file is emptied once they are done.
    path = str(tmp_path / "mlflow_pending.json")
    done: list[tuple[str, dict]] = []
    down = {"now": True}

    def apply(w: Write) -> None:
        if down["now"]:
            raise ConnectionError("refused")
        done.append((w.what, w.args))

    first = HeldBackWrites(apply, lambda: not down["now"], path=path)
    first.submit(Write("r1", "result", {"trial": {"trial_id": "g1"}, "result": {"step": 250, "val_loss": 3.5}}))
    first.submit(Write("end", "group_end", {"trial": {"trial_id": "g1"}, "errored": False}))
    saved = json.loads(Path(path).read_text())
    assert [w["what"] for w in saved] == ["r1", "end"] and saved[0]["args"]["result"]["val_loss"] == 3.5
    del first  # the driver dies here: nothing else happens to these writes

    down["now"] = False
    second = HeldBackWrites(apply, lambda: True, path=path)
    assert second.load() == 2
    second.submit(Write("r2", "result", {}))
    assert [what for what, _ in done] == ["r1", "end", "r2"] and done[0][1]["result"]["step"] == 250
    assert json.loads(Path(path).read_text()) == [] and HeldBackWrites(apply, lambda: True, path=path).load() == 0


def test_the_callback_makes_the_writes_an_earlier_start_held_back(tmp_path):
    # The callback end to end on a real sqlite store: writes an earlier driver held back (a group's result and
    # its end) are made at setup, before anything of the new start, with the trial as it was then.
    uri = f"sqlite:///{tmp_path}/m.db"
    pending = tmp_path / "mlflow_pending.json"
    cb = _callback(uri, pending_path=str(pending))
    t = _trial("g1")
    cb.on_trial_start(iteration=0, trials=[t], trial=t)
    last = _result(8, status="finished")
    done = _trial("g1", status="TERMINATED", last=last)
    view = asdict(TrialView.of(done))
    pending.write_text(json.dumps([{"what": "logging", "op": "result", "args": {"trial": view, "result": last}},
                                   {"what": "ending", "op": "group_end", "args": {"trial": view, "errored": False}}]))
    again = pickle.loads(pickle.dumps(cb))  # what Tune restores
    again.setup()
    runs = _runs(uri)
    group = next(r for r in runs if r.data.tags[TAG_KIND] == "group")
    assert group.info.status == "FINISHED" and group.data.tags[TAG_STATUS] == "finished"
    assert json.loads(pending.read_text()) == []


def test_the_experiment_is_a_training_experiment_and_runs_are_named_by_their_shape(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    client.create_experiment("exp")  # made earlier without the kind (an older version, or by hand): tagged now
    cb = _callback(uri)
    t = _trial("g1")
    cb.on_trial_start(iteration=0, trials=[t], trial=t)
    # MLflow 3's UI opens a "custom_model_development" experiment on its runs table, not on GenAI traces.
    assert client.get_experiment_by_name("exp").tags[TAG_EXPERIMENT_KIND] == TRAINING_EXPERIMENT
    names = sorted(r.info.run_name for r in _runs(uri) if r.data.tags[TAG_KIND] != "sweep")
    assert names == ["wsd: warmup 10% lin, hold 40%, cos -> 0.1 (g1)", "wsd: warmup 10% lin, hold 40%, cos -> 0.1 (g1) seed 0",
                     "wsd: warmup 10% lin, hold 40%, cos -> 0.1 (g1) seed 1"]
    fresh = f"sqlite:///{tmp_path / 'n.db'}"
    _callback(fresh)  # a new store: the experiment is created with the kind
    assert MlflowClient(fresh).get_experiment_by_name("exp").tags[TAG_EXPERIMENT_KIND] == TRAINING_EXPERIMENT


def test_a_running_groups_step_comes_from_its_metrics_and_the_train_run_tag_follows_a_restart(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    later = _result(20)
    later["per_seed"]["1"]["train_run"] = "t-seed1-restarted"  # seed 1's Train run was started again
    _started(uri, _result(10), later)

    (group,) = groups_from_mlflow(uri, "exp", "s1")
    assert group.step == 20  # no per-step tag is written: the group run's latest metric step says it
    seeds = {r.data.tags["schedsweep.seed"]: r for r in _runs(uri) if r.data.tags[TAG_KIND] == "seed"}
    assert seeds["0"].data.tags["schedsweep.train_run"] == "t-seed0"
    assert seeds["1"].data.tags["schedsweep.train_run"] == "t-seed1-restarted"
    assert all("schedsweep.last_step" not in r.data.tags for r in _runs(uri))
