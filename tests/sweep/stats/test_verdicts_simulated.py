"""Verdicts and the seed planner on simulated seed groups: the statistics see what the law says, no more."""

from __future__ import annotations

from search_spaces import get_preset, schedule_from_dict
from sweep.stats.planning import paired_power, paired_std
from sweep.stats.verdicts import BETTER, NO_DIFFERENCE, paired_comparison
from trainable.simulator import SimulatorConfig, noiseless_final_loss, simulate

CFG = SimulatorConfig(law="mpl_25m", peak_lr=3e-4, total_steps=24_000, eval_interval=24_000)


def group(schedule, seeds):
    return {str(s): simulate(CFG, schedule, s).final_metrics["val_loss"] for s in seeds}


def cosine(floor: float):
    return schedule_from_dict({"warmup_frac": 0.02, "hold_frac": 0.02, "shape": "cosine", "floor": floor})


def test_a_large_effect_is_called_better_with_a_few_seeds():
    wsd, cos = get_preset("wsd_sqrt"), get_preset("nanogpt_cosine")
    gap = noiseless_final_loss(wsd, CFG) - noiseless_final_loss(cos, CFG)
    assert gap < -0.01  # the law's verdict, far above the noise
    c = paired_comparison(group(wsd, range(4)), group(cos, range(4)), names=("wsd_sqrt", "nanogpt_cosine"))
    assert c.verdict == BETTER and c.ci_high < 0


def test_an_effect_below_the_noise_is_not_called_with_three_seeds():
    a, b = cosine(0.10), cosine(0.12)
    gap = noiseless_final_loss(a, CFG) - noiseless_final_loss(b, CFG)
    assert 0 < abs(gap) < 0.0015  # a true but tiny difference
    seeds = range(3)
    c = paired_comparison(group(a, seeds), group(b, seeds))
    assert c.verdict == NO_DIFFERENCE
    # And the planner agrees that three seeds had almost no chance: the pairs' std is the simulator's
    # sqrt(2) * noise_std (the seed offset cancels).
    std = paired_std(group(a, range(40)), group(b, range(40)))
    assert 0.0015 < std < 0.0030
    assert paired_power(3, abs(gap), std) < 0.1
