"""Seed groups with early stopping.

Fast tests: the group aggregate (means over seeds, aligned steps, the final result held back) and what
GroupSearcher tells a real Optuna study. The Ray test runs `sweep run` on a real local Ray with real DDP
(2 gloo workers per seed run), real Optuna TPE and ASHA, then checks that groups were stopped as one and that
Optuna saw COMPLETE only for groups that ran to the end, with the mean over all seeds.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from ray.tune.search import Searcher

from sweep.config import SweepConfig
from sweep.engine.aggregation import GroupAggregator
from sweep.engine.searcher import GroupSearcher

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env, tiny_sweep  # noqa: E402
from sweep.core.trial_spec import TrialSpec

REPO = Path(__file__).resolve().parents[3]
TrialState = optuna.trial.TrialState


def rep(step: int, val: float, final: bool = False, status: str | None = None) -> dict:
    m = {"step": step, "tokens": step * 100, "val_loss": val, "val_bpb": val / 2, "train_loss": val + 0.1,
         "lr": 1e-3, "lr_multiplier": 1.0, "tokens_per_s": 1000.0, "final": final}
    if status:
        m["status"] = status
    return m


# ---------------------------------------------------------------------------------------------------------
def test_group_result_needs_every_seed_and_holds_the_final_back() -> None:
    agg = GroupAggregator([0, 1, 2], {0: "t-seed0", 1: "t-seed1", 2: "t-seed2"})
    assert agg.add(0, rep(4, 3.0)) == [] and agg.add(1, rep(4, 4.0)) == []
    (r,) = agg.add(2, rep(4, 5.5))
    assert r["step"] == 4 and r["status"] == "running"
    assert r["val_loss"] == math.fsum([3.0, 4.0, 5.5]) / 3 and r["tokens_per_s"] == 3000.0
    assert set(r["per_seed"]) == {"0", "1", "2"} and r["per_seed"]["1"]["train_run"] == "t-seed1"
    for s, v in ((0, 2.0), (1, 2.5), (2, 3.0)):
        assert agg.add(s, rep(8, v, final=True, status="finished")) == []  # never from add()
    final = agg.finish()
    assert final["step"] == 8 and final["status"] == "finished" and final["val_loss"] == 2.5


def test_steps_a_resumed_seed_skipped_are_dropped_and_steps_stay_increasing() -> None:
    agg = GroupAggregator([0, 1], {})
    agg.add(0, rep(4, 3.0))
    agg.add(1, rep(8, 3.0))  # seed 1 resumed past step 4: step 4 can never be complete
    (r,) = agg.add(0, rep(8, 2.0))
    assert r["step"] == 8 and r["val_loss"] == 2.5 and agg.last_emitted == 8
    assert agg.add(0, rep(4, 9.0)) == []  # an old step reported again never goes out twice


def test_a_restarted_group_forms_the_results_lost_in_a_kill_from_its_seeds_replayed_history(tmp_path: Path) -> None:
    # What the issue measured on a script sweep: seed 0 ran ahead to its step-100 checkpoint while the group
    # had sent only steps 0 and 25 (seed 1 was slower); then the driver died. After the restore each seed says
    # its saved reports again (trainable.report_history), and the group trial starts from the last step Tune
    # got (`emitted_step`): steps 50 and 75 are formed now, steps 0 and 25 are not sent twice.
    from sweep.engine.group_trial import _report, emitted_step

    config = TrialSpec(train_storage=str(tmp_path / "train"))
    assert emitted_step(config, "t") == -1  # never reported: a fresh group
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "t-group.json").write_text(json.dumps({"step": 25}))
    agg = GroupAggregator([0, 1], {})
    agg.last_emitted = emitted_step(config, "t")
    assert agg.last_emitted == 25
    out = []
    for step in (0, 25, 50, 75, 100):  # seed 0's checkpoint history, said again
        out += agg.add(0, rep(step, 5.0 - step / 100))
    for step in (0, 25):  # seed 1's, then it trains on from its step-25 checkpoint
        out += agg.add(1, rep(step, 5.1 - step / 100))
    assert out == []
    for step in (50, 75, 100, 125):
        out += agg.add(1, rep(step, 5.1 - step / 100))
    out += agg.add(0, rep(125, 3.75))
    assert [r["step"] for r in out] == [50, 75, 100, 125]
    assert out[0]["val_loss"] == pytest.approx(4.55)
    with pytest.warns(UserWarning, match="report"):  # outside a Tune session tune.report only warns
        _report(out[-1], config, "t")
    assert emitted_step(config, "t") == 125  # recorded once sent: a restart after this starts there


def test_a_diverged_seed_fails_the_group_with_the_penalty() -> None:
    agg = GroupAggregator([0, 1], {}, penalty=10.0)
    agg.add(0, rep(4, 3.0))
    agg.add(1, rep(4, 3.2))
    assert agg.add(1, rep(6, float("nan"), final=True, status="diverged")) == []
    assert agg.diverged
    r = agg.diverged_result()
    assert r["status"] == "diverged" and r["val_loss"] == 10.0 and r["step"] > 4


def test_finish_uses_fit_results_when_a_final_report_is_missing_and_fails_without() -> None:
    agg = GroupAggregator([0, 1], {})
    agg.add(0, rep(4, 3.0, final=True, status="finished"))
    with pytest.raises(RuntimeError, match="seed run"):
        GroupAggregator([0, 1], {}).finish({0: rep(4, 1.0, True, "finished"), 1: None})
    assert agg.finish({1: rep(4, 5.0, final=True, status="finished")})["val_loss"] == 4.0


def test_searcher_emits_baselines_first_and_tells_optuna_the_truth(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=["constant", "wsd_sqrt"], budget=4))
    s = GroupSearcher(cfg.search_space, list(cfg.seeds), list(cfg.baselines), cfg.budget, fixed={"x": 1},
                      divergence_penalty=None, seed=0)
    configs = [s.suggest(f"t{i}") for i in range(6)]
    assert [c["baseline"] for c in configs] == ["constant", "wsd_sqrt", None, None, None, None]
    assert all(c["seeds"] == [0, 1] and c["x"] == 1 for c in configs)
    assert s.suggest("t6") == "FINISHED"  # the budget is spent
    for tid in ("t0", "t1"):
        s.on_trial_complete(tid, {"status": "finished", "val_loss": 1.0, "step": 12})
    s.on_trial_result("t2", {"val_loss": 3.0, "step": 4, "status": "running"})
    s.on_trial_complete("t2", {"val_loss": 3.0, "step": 4, "status": "running"})  # stopped by ASHA
    s.on_trial_complete("t3", {"val_loss": 2.0, "step": 12, "status": "finished"})
    s.on_trial_complete("t4", {"val_loss": float("nan"), "step": 6, "status": "diverged"})
    s.on_trial_complete("t5", None, error=True)
    trials = s.study.get_trials(deepcopy=False)
    assert len(trials) == 4  # baselines never reach Optuna
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert trials[0].value == 3.0 and trials[1].value == 2.0


def test_divergence_penalty_is_told_as_a_value(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=[], budget=1))
    s = GroupSearcher(cfg.search_space, [0], [], 1, divergence_penalty=9.0, seed=0)
    s.suggest("a")
    s.on_trial_complete("a", {"val_loss": 9.0, "step": 6, "status": "diverged"})
    (t,) = s.study.get_trials()
    assert t.state == TrialState.COMPLETE and t.value == 9.0


def test_results_replayed_for_a_trial_the_study_already_closed_are_skipped(tmp_path: Path) -> None:
    # After a driver kill, Tune restores a searcher pickled before the study's last write and replays results
    # of trials the database already holds as finished. The study is the source of truth: skip, never raise.
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=[], budget=2))
    db = f"sqlite:///{tmp_path}/study.db"
    s = GroupSearcher(cfg.search_space, [0], [], 2, seed=0, storage=db, study_name="replay")
    s.suggest("a")
    s.suggest("b")
    s.on_trial_result("a", {"val_loss": 4.0, "rung_loss": 4.0, "step": 2})
    s.save(str(tmp_path / "searcher.pkl"))  # the last searcher state Tune saved ...
    s.on_trial_complete("a", {"val_loss": 3.0, "step": 6, "status": "finished"})  # ... then the study moved on
    s.on_trial_complete("b", {"val_loss": 3.5, "step": 4, "status": "running"})

    restored = GroupSearcher(cfg.search_space, [0], [], 2, seed=0, storage=db, study_name="replay")
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("a", {"val_loss": 3.5, "rung_loss": 3.5, "step": 4})  # replayed: no exception
    restored.on_trial_complete("a", {"val_loss": 3.0, "step": 6, "status": "finished"})
    restored.on_trial_result("b", {"val_loss": 3.5, "rung_loss": 3.5, "step": 4})
    restored.on_trial_complete("b", {"val_loss": 3.5, "step": 4, "status": "running"})
    trials = optuna.load_study(study_name="replay", storage=db).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[0].value == 3.0 and trials[0].intermediate_values == {2: 4.0}


def test_trials_asked_after_the_saved_searcher_state_are_adopted_not_asked_again(tmp_path: Path) -> None:
    # The driver asked trials (one finished, one still running) after Tune's last checkpoint, then died: the
    # restored searcher does not know them, and Tune creates new trials in their place. Those adopt the
    # orphans, so the study ends with exactly the budget, none RUNNING, none duplicated.
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=[], budget=3))
    db = f"sqlite:///{tmp_path}/study.db"
    s = GroupSearcher(cfg.search_space, [0], [], 3, seed=0, storage=db, study_name="orphans")
    first = s.suggest("a")
    s.save(str(tmp_path / "searcher.pkl"))
    lost_done, lost_running = s.suggest("b"), s.suggest("c")
    s.on_trial_complete("b", {"val_loss": 3.0, "step": 6, "status": "finished"})

    restored = GroupSearcher(cfg.search_space, [0], [], 3, seed=0, storage=db, study_name="orphans")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("a") == first
    again_done, again_running = restored.suggest("x"), restored.suggest("y")
    assert again_done["schedule"] == lost_done["schedule"] and again_running["schedule"] == lost_running["schedule"]
    assert restored.suggest("z") == Searcher.FINISHED  # the budget (3) is spent: a, x, y
    for tid in ("a", "x", "y"):
        restored.on_trial_complete(tid, {"val_loss": 2.5, "step": 6, "status": "finished"})
    trials = optuna.load_study(study_name="orphans", storage=db).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[1].value == 3.0  # the finished orphan keeps the verdict Optuna had; x ran it again for Tune
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3


def test_restore_trusts_the_trials_tune_restores_over_an_older_searcher_state(tmp_path: Path) -> None:
    # Tune writes its experiment state, then the searcher state: a kill in between restores trials the saved
    # searcher never heard of. Their trial configs name their Optuna trials; the searcher links them instead
    # of handing those Optuna trials to new groups (which would run one shape twice and lose a trial).
    from sweep.engine.searcher import OPTUNA_TRIAL_KEY

    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=["constant"], budget=3))
    db = f"sqlite:///{tmp_path}/study.db"
    s = GroupSearcher(cfg.search_space, [0], list(cfg.baselines), 3, seed=0, storage=db, study_name="recon")
    configs = {tid: s.suggest(tid) for tid in ("base", "a")}
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    s.save(str(tune_dir / "searcher-state-2026-01-01_00-00-00.pkl"))  # the older searcher state ...
    configs["b"] = s.suggest("b")  # ... then b, which only the experiment state records
    assert configs["b"][OPTUNA_TRIAL_KEY] == 1
    trial_data = [[json.dumps({"trial_id": tid, "config": c}), "{}"] for tid, c in configs.items()]
    (tune_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))

    restored = GroupSearcher(cfg.search_space, [0], list(cfg.baselines), 3, seed=0, storage=db, study_name="recon")
    restored.restore_from_dir(str(tune_dir))
    assert restored.optuna_trial_number("b") == 1 and restored.is_baseline("base")
    new = restored.suggest("c")
    assert new[OPTUNA_TRIAL_KEY] == 2 and new["schedule"] != configs["b"]["schedule"]  # a fresh ask, not b's
    assert restored.suggest("d") == Searcher.FINISHED  # a, b, c: the budget
    for tid in ("a", "b", "c"):
        restored.on_trial_complete(tid, {"val_loss": 2.0, "step": 6, "status": "finished"})
    trials = optuna.load_study(study_name="recon", storage=db).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_penalty_below_a_finished_group_is_raised_above_it(tmp_path: Path) -> None:
    # A script's losses are unknown before it runs: a penalty that turns out lower than a finished group's
    # final loss would make TPE prefer diverging shapes, so the searcher raises it to 10 % above the worst.
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, baselines=[], budget=3))
    s = GroupSearcher(cfg.search_space, [0], [], 3, divergence_penalty=2.0, seed=0)
    for tid in ("a", "b", "c"):
        s.suggest(tid)
    s.on_trial_complete("a", {"val_loss": 3.0, "step": 6, "status": "finished"})
    s.on_trial_complete("b", {"val_loss": 2.5, "step": 6, "status": "finished"})
    s.on_trial_complete("c", {"val_loss": float("nan"), "step": 3, "status": "diverged"})
    values = [t.value for t in s.study.get_trials()]
    assert values[:2] == [3.0, 2.5] and values[2] == pytest.approx(3.3)
    assert values[2] > max(values[:2])


# ---------------------------------------------------------------------------------------------------------
def read_trials(sweep_dir: Path) -> list[dict]:
    """Every Tune trial of a finished sweep, from its folder: index, id, config, results (oldest first)."""
    trials = []
    for d in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / "params.json").exists()):
        m = re.match(r"group_trial_[0-9a-f]+_(\d+)_", d.name)
        results = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
        config = json.loads((d / "params.json").read_text())
        trials.append({"index": int(m.group(1)), "dir": d, "config": config, "results": results,
                       "id": results[0]["trial_id"] if results else None})
    return sorted(trials, key=lambda t: t["index"])


def check_group_results(results: list[dict], seeds: list[int]) -> None:
    """Every group result: all seeds at the same step, means over seeds, steps increasing, status last."""
    steps = [r["step"] for r in results]
    assert steps == sorted(set(steps)), steps
    for r in results[:-1]:
        assert r["status"] == "running"
    for r in results:
        per = r["per_seed"]
        assert sorted(per) == sorted(str(s) for s in seeds)
        assert all(p["step"] == r["step"] for p in per.values())
        assert r["val_loss"] == pytest.approx(math.fsum(p["val_loss"] for p in per.values()) / len(per), abs=1e-12)


def ckpt_steps(train_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in train_dir.glob("step_*"))


@pytest.mark.ray
@pytest.mark.ddp
@pytest.mark.slow
def test_sweep_groups_stop_as_one_and_optuna_sees_complete_only_for_finished(tmp_path: Path) -> None:
    d = tiny_sweep(tmp_path, name="groups", budget=2)
    # Long enough after the first rungs (steps 4, 8) that a stopped group's seed runs would visibly carry on
    # to the horizon if stopping the group did not end them (they did, at 40 steps, before GroupStopper).
    d["trainer"]["horizon"] = {"steps": 80}
    # A mediocre baseline, and a space of one excellent and one poor shape: ASHA (median rule at steps 4, 8)
    # lets the excellent shape run to the end and stops the poor one. TPE's seeded startup draws
    # [0.95, 0.0] for warmup_frac.
    d["baselines"] = [{"preset": "constant", "warmup_frac": 0.5}]
    d["search_space"] = {"warmup_frac": {"choices": [0.0, 0.95]}, "hold_frac": 1.0, "shape": "cosine", "floor": 0.1}
    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump(d))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "sweep folder" in proc.stdout and "mlflow ui" in proc.stdout
    # The stopped group's seed runs were torn down with its Tune trial, before they could remove their scratch
    # folders (staged checkpoints): the sweep's end removed them, and the finished runs removed their own.
    scratch_root = Path(env["TMPDIR"]) / "schedsweep-scratch"
    assert not (sorted(scratch_root.rglob("*")) if scratch_root.exists() else []), sorted(scratch_root.rglob("*"))

    sweep_dir = tmp_path / "sweeps" / "groups"
    trials = read_trials(sweep_dir / "tune")
    assert len(trials) == 3
    assert trials[0]["config"]["baseline"] == "constant" and trials[0]["config"]["seeds"] == [0, 1]
    for t in trials:
        check_group_results(t["results"], [0, 1])
    searched = [t for t in trials if t["config"]["baseline"] is None]
    study = optuna.load_study(study_name="groups", storage=d["optuna"]["storage"])
    ot = sorted(study.get_trials(), key=lambda t: t.number)
    assert len(ot) == len(searched) == 2  # the baseline is not an Optuna trial; no duplicates
    pruned = finished = 0
    for t, o in zip(searched, ot):
        last = t["results"][-1]
        assert o.params["warmup_frac"] == t["config"]["schedule"]["warmup_frac"]
        if last["status"] == "finished":
            finished += 1
            assert last["step"] == 80
            assert o.state == TrialState.COMPLETE
            assert o.value == pytest.approx(math.fsum(p["val_loss"] for p in last["per_seed"].values()) / 2)
        else:
            pruned += 1
            assert last["status"] == "running" and last["step"] < 80
            assert o.state == TrialState.PRUNED and o.value == pytest.approx(last["val_loss"])
            # Stopped as one: neither seed run trained on to the horizon.
            for seed in (0, 1):
                steps = ckpt_steps(sweep_dir / "train" / f"{t['id']}-seed{seed}")
                assert steps and max(steps) < 80, (seed, steps)
    assert pruned >= 1 and finished >= 1, [(t["config"]["schedule"], t["results"][-1]["status"]) for t in searched]
