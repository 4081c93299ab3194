"""Simulated trainer: the trainer's report contract, deterministic per-seed noise, resume, divergence."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from search_spaces import get_preset, schedule_from_dict
from search_spaces.errors import ConfigError
from trainable.loss_law import get_law, infer_warmup_steps
from trainable.simulator import SimulatorConfig, eval_steps, noiseless_final_loss, simulate

CONTRACT_METRICS = {
    "step", "tokens", "lr", "lr_multiplier", "train_loss", "val_loss", "val_bpb", "tokens_per_s", "elapsed_s",
}
SMALL = dict(total_steps=2_000, eval_interval=300, peak_lr=1e-3, tokens_per_step=1024)
TIMING = ("tokens_per_s", "elapsed_s")  # wall-clock metrics: the only ones allowed to differ between runs


class Recorder:
    def __init__(self):
        self.reports = []

    def on_report(self, report):
        self.reports.append(report)


def without_timing(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING}


def test_reports_follow_the_trainer_contract():
    cfg = SimulatorConfig(**SMALL)
    schedule = get_preset("wsd_sqrt")
    hooks = Recorder()
    result = simulate(cfg, schedule, seed=0, hooks=hooks)
    steps = [r.step for r in hooks.reports]
    assert steps == [300, 600, 900, 1200, 1500, 1800, 2000] == eval_steps(cfg)
    mults = schedule.multipliers(cfg.total_steps)
    for r in hooks.reports:
        assert set(r.metrics) - {"status"} == CONTRACT_METRICS
        assert r.tokens == r.metrics["tokens"] == r.step * 1024
        assert r.metrics["lr_multiplier"] == mults[r.step - 1]
        assert r.metrics["lr"] == pytest.approx(1e-3 * mults[r.step - 1], rel=1e-15)
        assert r.metrics["val_bpb"] == pytest.approx(r.metrics["val_loss"] / (math.log(2) * 4.3))
        assert r.final == (r.step == 2000) and ("status" in r.metrics) == r.final
    assert hooks.reports[-1].metrics["status"] == "finished" and result.status == "finished"
    assert result.reports == hooks.reports and result.final_metrics == hooks.reports[-1].metrics
    assert result.step == 2000 and len(result.lrs) == 2000 and result.start_step == 0


def test_same_seed_same_curve_other_seed_other_curve():
    cfg = SimulatorConfig(**SMALL)
    schedule = schedule_from_dict({"warmup_frac": 0.05, "hold_frac": 0.3, "shape": "cosine", "floor": 0.1})
    a = [without_timing(r.metrics) for r in simulate(cfg, schedule, 3).reports]
    b = [without_timing(r.metrics) for r in simulate(cfg, schedule, 3).reports]
    c = [without_timing(r.metrics) for r in simulate(cfg, schedule, 4).reports]
    assert a == b
    assert all(x["val_loss"] != y["val_loss"] for x, y in zip(a, c))


def test_noise_model_offset_shared_by_shapes_noise_not():
    # 300 seeds, two shapes: per-seed final losses spread by sqrt(noise^2 + offset^2); paired differences
    # only by sqrt(2) * noise, because the seed offset is common to both shapes.
    cfg = SimulatorConfig(**{**SMALL, "eval_interval": 2_000}, noise_std=0.0015, seed_offset_std=0.003)
    cos, wsd = get_preset("nanogpt_cosine"), get_preset("wsd_sqrt")
    seeds = range(300)
    fa = np.array([simulate(cfg, cos, s).final_metrics["val_loss"] for s in seeds])
    fb = np.array([simulate(cfg, wsd, s).final_metrics["val_loss"] for s in seeds])
    # std of a sample std with 300 draws is ~4 %; 15 % bounds are about 3.5 standard errors.
    assert np.std(fa, ddof=1) == pytest.approx(math.hypot(0.0015, 0.003), rel=0.15)
    assert np.std(fb - fa, ddof=1) == pytest.approx(math.sqrt(2) * 0.0015, rel=0.15)
    # And the mean tracks the law: within 4 standard errors of the noiseless final loss.
    se = math.hypot(0.0015, 0.003) / math.sqrt(300)
    assert abs(fa.mean() - noiseless_final_loss(cos, cfg)) < 4 * se


def test_noiseless_final_loss_is_the_law_on_absolute_lrs():
    cfg = SimulatorConfig(law="mpl_100m", peak_lr=3e-4, total_steps=24_000)
    schedule = get_preset("nanogpt_cosine")
    lrs = 3e-4 * schedule.multipliers(24_000)
    expected = get_law("mpl_100m").final_loss(lrs, infer_warmup_steps(lrs))
    assert noiseless_final_loss(schedule, cfg) == expected
    # With no noise at all the reported final loss is exactly that.
    quiet = SimulatorConfig(law="mpl_100m", peak_lr=3e-4, total_steps=24_000, noise_std=0.0, seed_offset_std=0.0)
    assert simulate(quiet, schedule, 0).final_metrics["val_loss"] == expected


def test_resume_from_a_checkpoint_continues_identically(tmp_path):
    schedule = get_preset("linear_to_zero")
    full = simulate(SimulatorConfig(**SMALL, checkpoint_dir=str(tmp_path / "a")), schedule, 7)
    ckpts = [r.checkpoint_dir for r in full.reports]
    assert all(c is not None for c in ckpts) and ckpts[2].endswith("step_00000900")
    hooks = Recorder()
    resumed = simulate(SimulatorConfig(**SMALL, checkpoint_dir=str(tmp_path / "b")), schedule, 7, hooks=hooks,
                       resume_from=ckpts[2])
    assert resumed.start_step == 900 and [r.step for r in hooks.reports] == [1200, 1500, 1800, 2000]
    assert [without_timing(r.metrics) for r in hooks.reports] == [without_timing(r.metrics) for r in full.reports[3:]]
    assert len(resumed.lrs) == 1100
    with pytest.raises(ConfigError) as err:
        simulate(SimulatorConfig(**SMALL), schedule, 7, resume_from=tmp_path)
    assert err.value.field == "resume_from"


def test_divergence_above_the_lr_threshold():
    cfg = SimulatorConfig(**SMALL, diverge_lr=8e-4)
    schedule = get_preset("nanogpt_cosine")
    lrs = 1e-3 * schedule.multipliers(2_000)
    first_above = int(np.flatnonzero(lrs > 8e-4)[0]) + 1
    result = simulate(cfg, schedule, 0)
    last = result.reports[-1]
    assert result.status == "diverged" and last.final and last.step == first_above
    assert last.metrics["status"] == "diverged" and math.isnan(last.metrics["val_loss"])
    assert noiseless_final_loss(schedule, cfg) == math.inf
    calm = SimulatorConfig(**SMALL, diverge_lr=2e-3)
    assert simulate(calm, schedule, 0).status == "finished"


def test_step_delay_paces_the_run():
    cfg = SimulatorConfig(total_steps=100, eval_interval=50, step_delay_s=0.002)
    start = time.perf_counter()
    result = simulate(cfg, get_preset("constant"), 0)
    assert time.perf_counter() - start >= 0.2
    assert result.final_metrics["elapsed_s"] >= 0.2


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"law": "nope"}, "law"),
        ({"law": {"L0": 3.0}}, "law.A"),
        ({"peak_lr": 0.0}, "peak_lr"),
        ({"total_steps": 0}, "total_steps"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"diverge_lr": math.inf}, "diverge_lr"),
    ],
)
def test_config_validation_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        SimulatorConfig(**overrides)
    assert err.value.field == field


def test_config_round_trip_and_unknown_key():
    cfg = SimulatorConfig(law=get_law("mpl_400m").to_dict(), noise_std=0.002)
    assert SimulatorConfig.from_dict(cfg.to_dict()) == cfg
    assert SimulatorConfig.from_dict({"peak_lr": "3e-4"}).peak_lr == 3e-4  # how PyYAML reads `3e-4`
    with pytest.raises(ConfigError) as err:
        SimulatorConfig.from_dict({"peak_lr": "fast"})
    assert err.value.field == "peak_lr"
    with pytest.raises(ConfigError) as err:
        SimulatorConfig.from_dict({"noise": 0.1})
    assert err.value.field == "noise"
