"""Rung metrics: what ASHA compares (`rung_loss`) for raw, cooldown and predicted, the simulator's cooldown
probe, and Ray's ASHA taking a rung result whose metric is missing. No Ray cluster: ASHA is called directly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from search_spaces import schedule_from_dict
from sweep.core.trial_spec import TrialSpec
from sweep.engine.aggregation import GroupAggregator
from sweep.engine.group_trial import seed_trainer_config
from sweep.engine.rung_metrics import MAX_FIT_POINTS, RUNG_KEY, RungScorer, predict_seed_final, run_lrs
from sweep.engine.scheduler import PersistentASHA
from trainable.config import TrainConfig
from trainable.simulator import SimulatorConfig, cooldown_probe_loss, iter_reports, noiseless_final_loss, probe_plan

QUIET = dict(total_steps=8000, eval_interval=250, noise_std=0.0, seed_offset_std=0.0)
WSD_LATE = {"hold_frac": 0.9, "shape": "sqrt", "floor": 0.0}
WSD_EARLY = {"hold_frac": 0.5, "shape": "cosine", "floor": 0.0}
CONSTANT = {"hold_frac": 1.0, "shape": "cosine", "floor": 0.0}


def rep(step: int, val: float, cooldown: float | None = None, final: bool = False) -> dict:
    m = {"step": step, "tokens": step, "val_loss": val, "val_bpb": val, "train_loss": val, "lr": 1.0,
         "lr_multiplier": 1.0, "tokens_per_s": 1.0, "final": final}
    if cooldown is not None:
        m["val_loss_cooldown"] = cooldown
    if final:
        m["status"] = "finished"
    return m


def feed(agg: GroupAggregator, rows: list[tuple[int, dict]]) -> list[dict]:
    out = []
    for seed, metrics in rows:
        out += agg.add(seed, metrics)
    return out


class _Trial:
    """What Ray's ASHA reads of a trial: its id (and, for the baseline rule, its config)."""

    def __init__(self, trial_id: str, config: dict | None = None):
        self.trial_id = trial_id
        self.config = config or {}


# ---------------------------------------------------------------------------------------------------------
def test_raw_rung_loss_is_the_mean_val_loss_everywhere() -> None:
    agg = GroupAggregator([0, 1], {}, scorer=RungScorer("raw", [4]))
    results = feed(agg, [(0, rep(2, 3.0)), (1, rep(2, 4.0)), (0, rep(4, 2.0)), (1, rep(4, 2.5)),
                         (0, rep(6, 1.0, final=True)), (1, rep(6, 1.5, final=True))])
    results.append(agg.finish())
    assert [r["step"] for r in results] == [2, 4, 6]
    assert all(r[RUNG_KEY] == r["val_loss"] for r in results)


def test_cooldown_rung_loss_at_rungs_raw_between_and_nan_when_a_probe_is_missing() -> None:
    # Probe steps 3 and 8 with evals every 2 steps: the rungs are the results at 4 and 8.
    agg = GroupAggregator([0, 1], {}, scorer=RungScorer("cooldown", [3, 8]))
    results = feed(agg, [
        (0, rep(2, 5.0)), (1, rep(2, 5.2)),
        (0, rep(4, 4.0, cooldown=3.5)), (1, rep(4, 4.2, cooldown=3.9)),
        (0, rep(6, 3.0)), (1, rep(6, 3.2)),
        (0, rep(8, 2.0, cooldown=1.5)), (1, rep(8, 2.2)),  # seed 1's probe did not come
    ])
    by_step = {r["step"]: r for r in results}
    assert by_step[2][RUNG_KEY] == by_step[2]["val_loss"]
    assert by_step[4][RUNG_KEY] == pytest.approx(3.7) and by_step[4]["val_loss"] == pytest.approx(4.1)
    assert by_step[6][RUNG_KEY] == by_step[6]["val_loss"]
    assert math.isnan(by_step[8][RUNG_KEY])


def test_asha_passes_a_group_whose_rung_metric_is_missing_and_leaves_it_out_of_the_cutoff(tmp_path: Path) -> None:
    asha = PersistentASHA(state_path=str(tmp_path / "asha.json"), time_attr="step", metric=RUNG_KEY, mode="min",
                          max_t=100, grace_period=4, reduction_factor=2)
    decisions = {}
    for tid, value in (("a", 3.0), ("b", math.nan), ("c", 2.0), ("d", 5.0)):
        asha.on_trial_add(None, _Trial(tid))
        decisions[tid] = asha.on_trial_result(None, _Trial(tid), {"step": 4, RUNG_KEY: value})
    assert decisions["b"] == "CONTINUE"  # no yardstick: the group passes this rung
    assert decisions["d"] == "STOP"  # the cutoff of {3.0, 2.0} (NaN ignored) is 2.5
    saved = json.loads((tmp_path / "asha.json").read_text())
    rung4 = next(rec for m, rec in saved["rungs"] if m == 4)
    assert math.isnan(rung4["b"]) and rung4["a"] == -3.0


def test_asha_never_stops_a_baseline_but_counts_its_results_at_every_rung(tmp_path: Path) -> None:
    asha = PersistentASHA(state_path=str(tmp_path / "asha.json"), time_attr="step", metric=RUNG_KEY, mode="min",
                          max_t=100, grace_period=4, reduction_factor=2)
    trials = {"s1": _Trial("s1", {"baseline": None}), "s2": _Trial("s2", {"baseline": None}),
              "base": _Trial("base", {"baseline": "constant"}), "s3": _Trial("s3", {"baseline": None})}
    for t in trials.values():
        asha.on_trial_add(None, t)
    decisions = {tid: asha.on_trial_result(None, trials[tid], {"step": 4, RUNG_KEY: v})
                 for tid, v in (("s1", 2.0), ("s2", 2.2), ("base", 9.0))}
    # s2 is worse than s1 (the only value recorded before it): stopped, as stock ASHA does. The baseline is by
    # far the worst at the first rung: stock ASHA stops it too; here it runs on, and is not counted as stopped.
    assert decisions["s2"] == "STOP" and decisions["base"] == "CONTINUE" and asha._num_stopped == 1
    # Its value counts for the cut-off of later groups at that rung: against {2.0, 2.2, 9.0} the median is 2.2,
    # so a searched group at 2.15 goes on; against {2.0, 2.2} alone (median 2.1) it would have stopped.
    assert asha.on_trial_result(None, trials["s3"], {"step": 4, RUNG_KEY: 2.15}) == "CONTINUE"
    saved = json.loads((tmp_path / "asha.json").read_text())
    rung4 = next(rec for m, rec in saved["rungs"] if m == 4)
    assert rung4["base"] == -9.0
    # Later rungs: the baseline is recorded again and still never stopped.
    assert asha.on_trial_result(None, trials["s1"], {"step": 8, RUNG_KEY: 1.0}) == "CONTINUE"
    assert asha.on_trial_result(None, trials["base"], {"step": 8, RUNG_KEY: 8.0}) == "CONTINUE"
    rung8 = next(rec for m, rec in json.loads((tmp_path / "asha.json").read_text())["rungs"] if m == 8)
    assert rung8["base"] == -8.0


def test_a_group_asha_stopped_is_stopped_again_when_a_restore_brings_it_back(tmp_path: Path) -> None:
    # A driver stopped (Ctrl-C) or killed after ASHA's STOP (which made the searcher tell Optuna PRUNED) but
    # before Tune's next experiment checkpoint: Tune restores the group as running. A fresh scheduler (what
    # Tuner.restore brings back) must stop it at its first result, not let it run to a finish.
    def fresh() -> PersistentASHA:
        return PersistentASHA(state_path=str(tmp_path / "asha.json"), time_attr="step", metric=RUNG_KEY,
                              mode="min", max_t=100, grace_period=4, reduction_factor=2)

    asha = fresh()
    trials = {tid: _Trial(tid, {"baseline": None}) for tid in ("good", "bad")}
    for t in trials.values():
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, trials["good"], {"step": 4, RUNG_KEY: 2.0}) == "CONTINUE"
    assert asha.on_trial_result(None, trials["bad"], {"step": 4, RUNG_KEY: 3.0}) == "STOP"
    assert json.loads((tmp_path / "asha.json").read_text())["stopped"] == ["bad"]

    restored = fresh()
    for t in trials.values():
        restored.on_trial_add(None, t)
    # Its result after the restore is past the rung it was recorded at: stock ASHA would let it go on.
    assert restored.on_trial_result(None, trials["bad"], {"step": 5, RUNG_KEY: 2.9}) == "STOP"
    assert restored.on_trial_result(None, trials["good"], {"step": 5, RUNG_KEY: 1.9}) == "CONTINUE"
    assert restored._num_stopped == 1  # the same decision, not a second one


# ---------------------------------------------------------------------------------------------------------
def test_simulator_probe_plan_and_accounting_follow_the_trainer_conventions() -> None:
    cfg = SimulatorConfig(total_steps=2000, eval_interval=300)
    # A probe step maps to the first eval at or after it; two landing on one eval share it; past T: never.
    assert probe_plan(cfg, [300, 301, 590, 5000], 0.2) == {300: 60, 600: 120}
    schedule = schedule_from_dict({"preset": "wsd_sqrt"})
    reports = list(iter_reports(cfg, schedule, 0, probe_steps=[300, 301, 590], probe_frac=0.2))
    with_probe = [r.step for r in reports if "val_loss_cooldown" in r.metrics]
    assert with_probe == [300, 600]
    assert [r.metrics["probe_steps_run"] for r in reports] == [60, 180, 180, 180, 180, 180, 180]
    assert all("val_loss_cooldown" not in r.metrics and "probe_steps_run" not in r.metrics
               for r in iter_reports(cfg, schedule, 0))


def test_simulator_probe_is_the_law_after_a_1_sqrt_anneal_to_the_floor() -> None:
    cfg = SimulatorConfig(**QUIET)
    schedule = schedule_from_dict({"warmup_frac": 0.05, "hold_frac": 0.6, "shape": "cosine", "floor": 0.1})
    lrs = cfg.peak_lr * schedule.multipliers(cfg.total_steps)
    step, k = 2000, 400
    u = np.arange(1, k + 1) / k
    tail = lrs[-1] + (lrs[step - 1] - lrs[-1]) * (1.0 - np.sqrt(u))
    probe_lrs = np.concatenate([lrs[:step], tail])
    law = cfg.law_params()
    expected = law.final_loss(probe_lrs, int(np.argmax(probe_lrs)))
    assert cooldown_probe_loss(cfg, schedule, 0, step, k) == pytest.approx(expected, abs=1e-12)
    (r,) = [r for r in iter_reports(cfg, schedule, 0, probe_steps=[step]) if r.step == step]
    assert r.metrics["val_loss_cooldown"] == pytest.approx(expected, abs=1e-12)
    assert r.metrics["val_loss_cooldown"] < r.metrics["val_loss"]  # 400 more steps, annealed


def test_simulator_probe_noise_is_its_own_draw_with_the_seed_offset() -> None:
    noisy = SimulatorConfig(total_steps=8000, eval_interval=250, noise_std=0.0015, seed_offset_std=0.001)
    quiet = SimulatorConfig(**QUIET)
    schedule = schedule_from_dict(WSD_LATE)
    diffs = [cooldown_probe_loss(noisy, schedule, s, 2000, 400) - cooldown_probe_loss(quiet, schedule, s, 2000, 400)
             for s in range(40)]
    vals = [next(r for r in iter_reports(noisy, schedule, s) if r.step == 2000).metrics["val_loss"]
            - next(r for r in iter_reports(quiet, schedule, s) if r.step == 2000).metrics["val_loss"] for s in range(40)]
    assert 0.001 < np.std(diffs) < 0.003  # offset (0.001) and noise (0.0015) together
    assert diffs != vals  # not the main run's draw
    assert diffs[3] == cooldown_probe_loss(noisy, schedule, 3, 2000, 400) - cooldown_probe_loss(quiet, schedule, 3, 2000, 400)


def _rung_values(schedule: dict, metric: str, rungs: list[int]) -> dict[int, float]:
    cfg = SimulatorConfig(**QUIET)
    config = {"backend": "simulator", "simulator": cfg.to_dict(), "schedule": schedule, "rung_metric": metric,
              "probe_steps": rungs, "cooldown_frac": 0.2}
    scorer = RungScorer.from_spec(TrialSpec.from_config(config))
    agg = GroupAggregator([0], {}, scorer=scorer)
    sch = schedule_from_dict(schedule)
    out = {}
    for r in iter_reports(cfg, sch, 0, probe_steps=rungs if metric == "cooldown" else ()):
        for res in agg.add(0, {**r.metrics, "final": r.final}):
            if res["step"] in rungs:
                out[res["step"]] = res[RUNG_KEY]
    return out


def test_schedule_aware_metrics_separate_shapes_that_raw_ties_and_rank_them_as_they_end() -> None:
    """Before any decay every hold-then-decay shape has the same raw loss: raw ASHA cannot tell them apart.
    The cooldown probe sees what annealing unlocks (constant vs WSD); the prediction also sees the
    remaining schedule (a late vs an early decay), and both rank as the true final losses do."""
    cfg = SimulatorConfig(**QUIET)
    truth = {k: noiseless_final_loss(schedule_from_dict(v), cfg)
             for k, v in (("late", WSD_LATE), ("early", WSD_EARLY), ("const", CONSTANT))}
    assert truth["late"] < truth["early"] < truth["const"]
    raw = {k: _rung_values(v, "raw", [2000])[2000] for k, v in (("late", WSD_LATE), ("const", CONSTANT))}
    assert raw["late"] == raw["const"]
    cool = {k: _rung_values(v, "cooldown", [2000])[2000] for k, v in (("late", WSD_LATE), ("const", CONSTANT))}
    assert cool["late"] < cool["const"] - 0.01
    pred = {k: _rung_values(v, "predicted", [2000, 4000])
            for k, v in (("late", WSD_LATE), ("early", WSD_EARLY), ("const", CONSTANT))}
    for rung in (2000, 4000):
        assert pred["late"][rung] < pred["early"][rung] < pred["const"][rung], pred


def test_prediction_from_a_partial_noisy_curve_closes_in_on_the_final_loss() -> None:
    """Before the decay the drop term comes from the prior alone (the paper's 100M law, the simulated world
    being its 25M law): the prediction is off by a few hundredths; once the decay is seen, it is close."""
    cfg = SimulatorConfig(total_steps=8000, eval_interval=50, noise_std=0.0015, seed_offset_std=0.0)
    schedule = schedule_from_dict({"preset": "wsd_sqrt"})  # decays over the last 20 %
    lrs = cfg.peak_lr * schedule.multipliers(cfg.total_steps)
    truth = noiseless_final_loss(schedule, cfg)
    points = [(r.step, r.metrics["val_loss"]) for r in iter_reports(cfg, schedule, 0)]
    errors = {}
    for upto in (4000, 7600):
        seen = [p for p in points if p[0] <= upto]
        assert len(seen) > MAX_FIT_POINTS  # thinned inside, the cost stays bounded
        errors[upto] = abs(predict_seed_final([p[0] for p in seen], [p[1] for p in seen], lrs) - truth)
    assert errors[4000] < 0.1 and errors[7600] < 0.01, errors
    assert math.isnan(predict_seed_final([50, 100, 150], [9.0, 8.0, 7.5], lrs))  # too few points


def test_a_step_0_report_is_left_out_of_the_fit_not_fatal() -> None:
    """nanoGPT evaluates before its first update: the curve starts at step 0 with the untrained loss. The
    prediction ignores that point and equals the one made without it (before, the fit raised on step 0 and
    `rung_loss` became NaN, so ASHA let every group through)."""
    cfg = SimulatorConfig(total_steps=2000, eval_interval=50, noise_std=0.0, seed_offset_std=0.0)
    lrs = cfg.peak_lr * schedule_from_dict({"preset": "wsd_sqrt"}).multipliers(cfg.total_steps)
    points = [(r.step, r.metrics["val_loss"]) for r in iter_reports(cfg, schedule_from_dict({"preset": "wsd_sqrt"}), 0)
              if r.step <= 1000]
    without = predict_seed_final([p[0] for p in points], [p[1] for p in points], lrs)
    with_zero = predict_seed_final([0] + [p[0] for p in points], [10.9] + [p[1] for p in points], lrs)
    assert math.isfinite(without) and with_zero == without


# ---------------------------------------------------------------------------------------------------------
def test_trial_configs_give_lrs_and_the_trainer_its_probes(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
    from test_sweep_run_helpers import tiny_sweep

    from sweep.config import SweepConfig
    from sweep.config.trial import trial_spec

    d = tiny_sweep(tmp_path, scheduler={"grace_period": 4, "reduction_factor": 2, "rung_metric": "cooldown",
                                        "cooldown_frac": 0.25})
    cfg = SweepConfig.from_dict(d)
    config = {**trial_spec(cfg).to_config(), "schedule": {"preset": "wsd_sqrt"}, "seeds": [0, 1]}
    assert config["probe_steps"] == [4, 8]
    trainer = seed_trainer_config(TrialSpec.from_config(config), 1)
    assert trainer["eval"]["probe_steps"] == [4, 8] and trainer["eval"]["probe_frac"] == 0.25
    assert TrainConfig.from_dict(trainer).eval.probe_steps == (4, 8)
    raw = seed_trainer_config(TrialSpec.from_config({**config, "rung_metric": "raw"}), 1)
    assert not raw["eval"].get("probe_steps")
    lrs = run_lrs(TrialSpec.from_config(config))
    assert len(lrs) == 12 and lrs.max() == pytest.approx(3e-3)
    sim = {"backend": "simulator", "simulator": SimulatorConfig(total_steps=500).to_dict(), "schedule": {"preset": "constant"}}
    assert len(run_lrs(TrialSpec.from_config(sim))) == 500 and run_lrs(TrialSpec.from_config(sim)).max() == pytest.approx(3e-4)
