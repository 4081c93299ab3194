"""MLflowSweepCallback in real Tune runs, read back through MlflowClient.

- against a real `mlflow server` on 127.0.0.1: the run layout (sweep -> group -> seed runs), params,
  step metrics, seed statistics, end states, the schedule plot, no leaked secrets, and the leaderboard
  built from both the MLflow store and Tune's ResultGrid;
- on the embedded sqlite store: a driver SIGKILLed mid-sweep, then `Tuner.restore`: the same runs go on,
  no duplicates, steps continue.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray import tune

from search_spaces import schedule_from_dict
from sweep.core.outcome import outcomes_from_result_grid
from sweep.tracking.callback import MLflowSweepCallback
from sweep.tracking.progress import SweepProgress, leaderboard
from sweep.tracking.queries import groups_from_mlflow, latest_metric_steps
from sweep.tracking.tags import (TAG_GROUP, TAG_KIND, TAG_PARENT, TAG_SEED, TAG_STATUS, TAG_SWEEP,
                                 TAG_TRAIN_RUN)
from servers import mlflow_server, pids_with_env, short_tmp
from test_mlflow_fixture import DIVERGED_PENALTY, group_trainable, seed_val_loss
from test_mlflow_layout import check_sweep_layout

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TESTS_DIR = Path(__file__).resolve().parents[2]  # the shared test helpers
HERE = Path(__file__).resolve().parent  # the driver subprocess imports this module by name
SEEDS = [0, 1, 2]
TOTAL, EVERY = 40, 10
SECRET = "s3cret-do-not-log"

# One dict per group: what the searcher would emit, plus the fixture's knobs.
CASES = {
    "base": {"schedule": {"preset": "wsd_sqrt"}, "baseline": "wsd_sqrt", "bias": 0.0},
    "good": {"schedule": {"warmup_frac": 0.1, "hold_frac": 0.5, "shape": "cosine", "floor": 0.1},
             "baseline": None, "bias": -0.2},
    "pruned": {"schedule": {"warmup_frac": 0.0, "hold_frac": 0.2, "shape": "linear", "floor": 0.0},
               "baseline": None, "bias": 0.5},
    "diverged": {"schedule": {"warmup_frac": 0.0, "hold_frac": 0.9, "shape": "sqrt", "floor": 0.0},
                 "baseline": None, "bias": 0.3, "diverge_seed": 1},
}


def _param_space(cases: dict, pause_marker: str | None = None) -> dict:
    """A grid over the cases; `sample_from` puts the contract keys at the top of each trial config."""
    return {
        "case": tune.grid_search(list(cases)),
        "schedule": tune.sample_from(lambda spec: cases[spec.config.case]["schedule"]),
        "baseline": tune.sample_from(lambda spec: cases[spec.config.case]["baseline"]),
        "seeds": SEEDS,
        "fixture": tune.sample_from(lambda spec: {
            "bias": cases[spec.config.case]["bias"], "total_steps": TOTAL, "eval_every": EVERY,
            "diverge_seed": cases[spec.config.case].get("diverge_seed"), "pause_marker": pause_marker}),
    }


def _stop_pruned(trial_id: str, result: dict) -> bool:
    # Stands in for ASHA: Tune stops the trial from the driver, so its last status stays "running".
    return result["config"]["case"] == "pruned" and result["step"] >= 2 * EVERY


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray cluster whose workers can import the fixture trainable; token auth off on purpose."""
    root = short_tmp()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_AUTH_MODE", "RAY_TMPDIR")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), saved["PYTHONPATH"]]))
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_TMPDIR"] = str(root)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(root, ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _sweep_runs(client: MlflowClient, experiment: str, sweep: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{sweep}'", max_results=1000)


def _by_kind(runs: list) -> dict[str, list]:
    out: dict[str, list] = {"sweep": [], "group": [], "seed": []}
    for r in runs:
        out[r.data.tags[TAG_KIND]].append(r)
    return out


def test_layout_on_mlflow_server(local_ray, tmp_path, monkeypatch, capsys):
    # Credentials come from the environment; this server ignores them, but nothing may log them.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    sweep_config = {"name": "layout", "seeds": SEEDS, "trainer": {"total_steps": TOTAL},
                    "mlflow": {"tracking_uri": f"http://alice:{SECRET}@mlflow.example", "token": SECRET}}
    with mlflow_server(tmp_path / "server") as uri:
        callback = MLflowSweepCallback(uri, "schedsweep-test", "layout", sweep_config, total_steps=TOTAL,
                                       seeds=SEEDS, search_space="fixture", strict=True)
        progress_out = io.StringIO()
        progress = SweepProgress(total_steps=TOTAL, interval_s=0.0, stream=progress_out)
        tuner = tune.Tuner(
            tune.with_resources(group_trainable, {"cpu": 0.5}),
            param_space=_param_space(CASES),
            run_config=tune.RunConfig(name="layout", storage_path=str(tmp_path / "ray_results"),
                                      callbacks=[callback, progress], stop=_stop_pruned, verbose=0),
        )
        grid = tuner.fit()
        assert "View run" not in capsys.readouterr().out  # no MLflow URL line per ended run in CI logs
        client = MlflowClient(uri)
        runs = _by_kind(_sweep_runs(client, "schedsweep-test", "layout"))

        # One sweep run, one group run per trial, one seed run per (group, seed): no more.
        assert len(runs["sweep"]) == 1 and len(runs["group"]) == 4 and len(runs["seed"]) == 12
        sweep_run = runs["sweep"][0]
        assert sweep_run.info.status == "FINISHED"
        assert sweep_run.data.params["trainer.total_steps"] == str(TOTAL)
        assert sweep_run.data.params["seeds"] == str(SEEDS)
        for key in ("schedsweep.git_commit", "schedsweep.version.torch", "schedsweep.version.ray",
                    "schedsweep.version.optuna", "schedsweep.version.mlflow", "schedsweep.version.schedsweep"):
            assert sweep_run.data.tags[key] not in ("", "not installed"), key
        assert sweep_run.data.tags["schedsweep.seeds"] == "0,1,2"
        assert sweep_run.data.tags["schedsweep.search_space"] == "fixture"
        artifacts = {a.path for a in client.list_artifacts(sweep_run.info.run_id)}
        assert {"sweep_config.yaml", "leaderboard.txt", "schedules_top.png"} <= artifacts
        config_text = Path(client.download_artifacts(sweep_run.info.run_id, "sweep_config.yaml", str(tmp_path))).read_text()
        assert "trainer" in config_text and SECRET not in config_text

        groups = {r.data.tags[TAG_GROUP]: r for r in runs["group"]}
        case_of = {r.metrics["trial_id"]: r.config["case"] for r in grid}
        assert set(groups) == set(case_of)
        for group_id, grun in groups.items():
            case = CASES[case_of[group_id]]
            assert grun.data.tags[TAG_PARENT] == sweep_run.info.run_id
            shape = {k: str(v) for k, v in schedule_from_dict(case["schedule"]).flat_params().items()}
            assert shape.items() <= grun.data.params.items()
            assert grun.data.params["baseline"] == (case["baseline"] or "")
            assert "schedule.png" in {a.path for a in client.list_artifacts(grun.info.run_id)}
            seed_runs = [r for r in runs["seed"] if r.data.tags[TAG_GROUP] == group_id]
            assert sorted(r.data.tags[TAG_SEED] for r in seed_runs) == ["0", "1", "2"]
            for srun in seed_runs:
                assert srun.data.tags[TAG_PARENT] == grun.info.run_id
                assert shape.items() <= srun.data.params.items()
                assert srun.data.params["seed"] == srun.data.tags[TAG_SEED]
                assert srun.data.params["group_id"] == group_id
                assert srun.data.tags[TAG_TRAIN_RUN] == f"fixture-seed{srun.data.tags[TAG_SEED]}"

        def seed_runs_of(case_name):
            gid = next(g for g, c in case_of.items() if c == case_name)
            return gid, {r.data.tags[TAG_SEED]: r for r in runs["seed"] if r.data.tags[TAG_GROUP] == gid}

        # A finished group: every step logged once at MLflow step = our step, stats over the final values.
        gid, seeds = seed_runs_of("good")
        for seed, srun in seeds.items():
            history = client.get_metric_history(srun.info.run_id, "val_loss")
            assert [m.step for m in history] == [10, 20, 30, 40]
            assert [m.value for m in history] == pytest.approx([seed_val_loss(s, int(seed), -0.2) for s in (10, 20, 30, 40)])
            assert {"train_loss", "val_bpb", "lr", "tokens_per_s", "mfu"} <= set(srun.data.metrics)
            assert srun.info.status == "FINISHED" and srun.data.tags[TAG_STATUS] == "finished"
        finals = [seed_val_loss(TOTAL, s, -0.2) for s in SEEDS]
        gm = groups[gid].data.metrics
        assert gm["final_val_loss_mean"] == pytest.approx(statistics.fmean(finals), abs=1e-12)
        assert gm["final_val_loss_std"] == pytest.approx(statistics.stdev(finals), rel=1e-9)
        half = 4.302652729911275 * statistics.stdev(finals) / math.sqrt(3)  # t(0.975, df=2)
        assert gm["final_val_loss_ci95_low"] == pytest.approx(statistics.fmean(finals) - half, rel=1e-9)
        assert {"final_val_bpb_mean", "final_val_bpb_ci95_high", "val_loss", "tokens_per_s"} <= set(gm)
        assert groups[gid].info.status == "FINISHED" and groups[gid].data.tags[TAG_STATUS] == "finished"

        # Stopped by Tune mid-way: pruned, KILLED, the group and its seeds alike.
        gid, seeds = seed_runs_of("pruned")
        assert groups[gid].info.status == "KILLED" and groups[gid].data.tags[TAG_STATUS] == "pruned"
        assert all(r.info.status == "KILLED" and r.data.tags[TAG_STATUS] == "pruned" for r in seeds.values())
        assert groups[gid].data.metrics["final_step"] == 20

        # One seed diverged: the group fails; the diverged seed FAILED, its siblings were stopped.
        gid, seeds = seed_runs_of("diverged")
        assert groups[gid].info.status == "FAILED" and groups[gid].data.tags[TAG_STATUS] == "diverged"
        assert seeds["1"].info.status == "FAILED" and seeds["1"].data.tags[TAG_STATUS] == "diverged"
        assert seeds["1"].data.metrics["val_loss"] == DIVERGED_PENALTY
        assert seeds["0"].info.status == "KILLED" and seeds["0"].data.tags[TAG_STATUS] == "stopped"

        # No secret anywhere in params or tags of any run.
        for r in runs["sweep"] + runs["group"] + runs["seed"]:
            for value in list(r.data.params.values()) + list(r.data.tags.values()):
                assert SECRET not in value

        # The leaderboard reads the same from the MLflow store and from Tune's ResultGrid.
        from_mlflow = leaderboard(groups_from_mlflow(uri, "schedsweep-test", "layout"))
        from_grid = leaderboard(outcomes_from_result_grid(grid))
    assert from_mlflow == from_grid
    # The live progress printed every group's start and end, and the same leaderboard at the end.
    printed = progress_out.getvalue()
    for gid, case in case_of.items():
        assert f"start  {gid}" in printed
        state = {"pruned": "stopped by ASHA", "diverged": "diverged"}.get(case, "finished")
        words = schedule_from_dict(CASES[case]["schedule"]).describe()  # every group named by its shape
        assert f"end    {gid} ({words}) {state}" in printed
    assert "step 20/40" in printed
    assert "2 finished of 4 groups" in printed
    lines = from_mlflow.splitlines()
    ranked = [line for line in lines if line.strip()[:1].isdigit()]
    good_gid = next(g for g, c in case_of.items() if c == "good")
    base_gid = next(g for g, c in case_of.items() if c == "base")
    assert [line.split()[1] for line in ranked] == [good_gid, base_gid]  # good has bias -0.2
    unranked = lines[lines.index(next(line for line in lines if line.startswith("Not ranked"))) + 1:]
    assert {line.split()[1]: line.split()[2] for line in unranked} == {
        next(g for g, c in case_of.items() if c == "pruned"): "pruned",
        next(g for g, c in case_of.items() if c == "diverged"): "diverged"}


DRIVER = textwrap.dedent("""
    import os, sys
    import ray
    from ray import tune
    from sweep.tracking.callback import MLflowSweepCallback
    import test_mlflow_tune as t
    from test_mlflow_fixture import group_trainable

    tracking_uri, results, marker = sys.argv[1:4]
    cases = {k: t.CASES[k] for k in ("base", "good")}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    callback = MLflowSweepCallback(tracking_uri, "resume-test", "resume", {"seeds": t.SEEDS},
                                   total_steps=t.TOTAL, strict=True)
    tuner = tune.Tuner(tune.with_resources(group_trainable, {"cpu": 0.5}),
                       param_space=t._param_space(cases, pause_marker=marker),
                       run_config=tune.RunConfig(name="resume", storage_path=results, callbacks=[callback], verbose=0))
    tuner.fit()
""")


def test_resume_after_driver_killed(local_ray, tmp_path):
    """SIGKILL the driver while a group waits mid-way, restore: same runs, no duplicates, steps go on."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results, marker = tmp_path / "ray_results", tmp_path / "paused"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
               RAY_AUTH_MODE="disabled", RAY_TMPDIR=short_tmp(), TUNE_GLOBAL_CHECKPOINT_S="0.5")
    log = open(tmp_path / "driver.log", "wb")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, tracking_uri, str(results), str(marker)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MlflowClient(tracking_uri)
        deadline = time.monotonic() + 120
        finished = False
        while time.monotonic() < deadline and not finished:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            if marker.exists() and client.get_experiment_by_name("resume-test") is not None:
                groups = [r for r in _by_kind(_sweep_runs(client, "resume-test", "resume"))["group"]]
                # Wait for the other group to end, so the kill hits exactly one paused group.
                finished = sum(r.info.status == "FINISHED" for r in groups) == 1
            time.sleep(0.5)
        assert finished, (tmp_path / "driver.log").read_text()[-3000:]
        time.sleep(2.0)  # let Tune save its experiment state with the paused trial's step-20 checkpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local cluster it started
        driver.wait()
        log.close()
        # Ray processes that left the driver's process group still carry its unique RAY_TMPDIR.
        for pid in pids_with_env("RAY_TMPDIR", env["RAY_TMPDIR"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)

    before = _by_kind(_sweep_runs(client, "resume-test", "resume"))
    assert len(before["group"]) == 2 and len(before["seed"]) == 6
    paused = next(r for r in before["group"] if r.info.status == "RUNNING")
    paused_gid = paused.data.tags[TAG_GROUP]
    assert max(latest_metric_steps(paused)) == 20  # where the resume picks it up
    ids_before = {r.info.run_id for kind in before.values() for r in kind}

    restored = tune.Tuner.restore(str(results / "resume"), trainable=tune.with_resources(group_trainable, {"cpu": 0.5}),
                                  resume_unfinished=True, resume_errored=True)
    grid = restored.fit()
    assert not grid.errors

    after = _by_kind(_sweep_runs(client, "resume-test", "resume"))
    assert {r.info.run_id for kind in after.values() for r in kind} == ids_before  # no duplicates
    assert all(r.info.status == "FINISHED" for kind in after.values() for r in kind)
    for srun in (r for r in after["seed"] if r.data.tags[TAG_GROUP] == paused_gid):
        steps = [m.step for m in client.get_metric_history(srun.info.run_id, "val_loss")]
        assert steps == [10, 20, 30, 40]  # continued after 20, nothing logged twice, no restart at 1
    assert "schedsweep.resumed_at" in after["sweep"][0].data.tags
    check_sweep_layout(tracking_uri, "resume-test", "resume", SEEDS, groups=[r.metrics["trial_id"] for r in grid])
