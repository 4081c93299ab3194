"""MLflowSweepCallback driven hook by hook on a real sqlite MLflow store (no Ray cluster: fast).

Trials are plain objects with the attributes Tune's hooks read (`trial_id`, `config`, `last_result`,
`status`); the results follow the group-trial contract. The Tune-driven tests are in test_mlflow_tune.py.
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from sweep.mlflow_params import loggable_params, redact_uri
from sweep.mlflow_tracking import TAG_GROUP, TAG_KIND, TAG_STATUS, TAG_SWEEP, MLflowSweepCallback, groups_from_mlflow

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


def test_restored_callback_reuses_runs_and_skips_replayed_steps(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cb = _callback(uri)
    t = _trial("g1")
    cb.on_trial_start(iteration=0, trials=[t], trial=t)
    cb.on_trial_result(iteration=1, trials=[t], trial=t, result=_result(10))
    cb.on_trial_result(iteration=2, trials=[t], trial=t, result=_result(20))

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

    cb = MLflowSweepCallback(f"sqlite:///{tmp_path}/m.db", "e", "s", {"name": "s"})
    done: list[str] = []
    caplog.set_level(logging.INFO, logger="sweep.mlflow_tracking")
    cb._in_order("a", done.append, "a")
    assert done == ["a"] and not cb._pending and "MLflow" not in caplog.text  # no outage, nothing said

    down = {"now": True}

    def write(name: str) -> None:
        if down["now"]:
            raise ConnectionError("refused")
        done.append(name)

    cb._reachable = lambda: not down["now"]
    cb._in_order("b", write, "b")
    cb._in_order("c", done.append, "c")  # would succeed, but must wait behind b to keep the order
    assert done == ["a"] and [w[0] for w in cb._pending] == ["b", "c"]
    assert caplog.text.count("holding writes back") == 1
    down["now"] = False
    cb._in_order("d", done.append, "d")
    assert done == ["a", "b", "c", "d"] and not cb._pending
    assert caplog.text.count("MLflow answers again") == 1

    def broken(name: str) -> None:
        raise ValueError("a bad write, the store answers")

    cb._in_order("e", broken, "e")  # skipped (logged), never held back: it would block every later write
    cb._in_order("f", done.append, "f")
    assert done[-1] == "f" and not cb._pending and caplog.text.count("MLflow answers again") == 1
