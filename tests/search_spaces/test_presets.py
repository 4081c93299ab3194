"""Each preset against its source formula, written out again here, at every step for a few (T, args)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from search_spaces import ConfigError, get_preset, list_presets, schedule_from_dict

LR = 6e-4  # a real peak LR, so the test divides get_lr(it) / learning_rate like the trainer would


def assert_matches(preset, total_steps: int, expected: list[float]) -> None:
    got = preset.multipliers(total_steps)
    assert got.dtype == np.float64 and got.shape == (total_steps,)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    for step in (0, total_steps // 2, total_steps - 1):
        assert preset.multiplier(step, total_steps) == got[step]


# -- nanoGPT ---------------------------------------------------------------------------------------------

def nanogpt_get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


@pytest.mark.parametrize("total, args, warmup, decay, ratio", [
    (1000, {}, 20, 1000, 0.1),
    (777, {"warmup_iters": 50, "lr_decay_iters": 700}, 50, 700, 0.1),
    (300, {"warmup_frac": 0.1, "min_lr_ratio": 0.0}, 30, 300, 0.0),
    (1, {}, 0, 1, 0.1),
])
def test_nanogpt_cosine(total, args, warmup, decay, ratio):
    expected = [nanogpt_get_lr(it, warmup, decay, LR, LR * ratio) / LR for it in range(total)]
    assert_matches(get_preset("nanogpt_cosine", **args), total, expected)


# -- parameter-golf and seed 000 --------------------------------------------------------------------------

def pgolf_lr_mul(step, iterations, warmdown_iters):
    if warmdown_iters <= 0:
        return 1.0
    if max(iterations - warmdown_iters, 0) <= step < iterations:
        return max((iterations - step) / max(warmdown_iters, 1), 0.0)
    return 1.0


@pytest.mark.parametrize("total, args, iterations, warmdown", [
    (1000, {}, 1000, 60),
    (500, {"warmdown_iters": 200}, 500, 200),
    (500, {"iterations": 400, "warmdown_iters": 100}, 400, 100),  # steps past I: the source's 1.0
    (50, {"warmdown_iters": 80}, 50, 80),  # warmdown longer than the run starts below 1
    (64, {"warmdown_iters": 0}, 64, 0),
])
def test_pgolf_warmdown(total, args, iterations, warmdown):
    expected = [pgolf_lr_mul(s, iterations, warmdown) for s in range(total)]
    assert_matches(get_preset("pgolf_warmdown", **args), total, expected)


@pytest.mark.parametrize("total, args, iterations, frac", [
    (1000, {}, 1000, 0.1), (333, {"min_lr_frac": 0.0}, 333, 0.0), (200, {"iterations": 150}, 150, 0.1),
])
def test_seed000_cosine(total, args, iterations, frac):
    expected = [frac + 0.5 * (1.0 - frac) * (1.0 + math.cos(math.pi * s / max(iterations, 1)))
                for s in range(total)]
    assert_matches(get_preset("seed000_cosine", **args), total, expected)


# -- seed 003, both submissions with their CONFIG_OVERRIDES ------------------------------------------------

def seed003_first(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:
        return min_lr
    hold_end = max(warmup_iters + 1, int(lr_decay_iters * 0.70))
    tail_start = max(hold_end + 1, int(lr_decay_iters * 0.90))
    if it < hold_end:
        return learning_rate
    if it < tail_start:
        t = (it - hold_end) / (tail_start - hold_end)
        coeff = 0.5 * (1.0 + math.cos(math.pi * t))
        mid_lr = min_lr + 0.35 * (learning_rate - min_lr)
        return mid_lr + coeff * (learning_rate - mid_lr)
    t = (it - tail_start) / (lr_decay_iters - tail_start)
    start_tail_lr = min_lr + 0.35 * (learning_rate - min_lr)
    coeff = (1.0 - t) ** 2
    return min_lr + coeff * (start_tail_lr - min_lr)


def seed003_second(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        t = (it + 1) / (warmup_iters + 1)
        return learning_rate * math.sqrt(t)
    if it >= lr_decay_iters:
        return min_lr
    hold_end = max(warmup_iters + 1, int(lr_decay_iters * 0.65))
    if it < hold_end:
        return learning_rate
    t = (it - hold_end) / (lr_decay_iters - hold_end)
    coeff = 0.5 * (1.0 + math.cos(math.pi * t))
    floor = min_lr + 0.10 * (learning_rate - min_lr)
    return floor + coeff * (learning_rate - floor)


SEED003_CASES = [(12030, {}, 12030, 12030), (1000, {}, 1000, 1000), (97, {}, 97, 97), (3, {}, 3, 3),
                 (600, {"max_iters": 500, "lr_decay_iters": 550}, 500, 550)]


@pytest.mark.parametrize("total, args, max_iters, decay", SEED003_CASES)
def test_seed003_hold_cosine_poly(total, args, max_iters, decay):
    overrides = {"warmup_iters": int(max_iters * 0.02), "min_lr": LR / 20}
    expected = [seed003_first(it, overrides["warmup_iters"], decay, LR, overrides["min_lr"]) / LR
                for it in range(total)]
    assert_matches(get_preset("seed003_hold_cosine_poly", **args), total, expected)


@pytest.mark.parametrize("total, args, max_iters, decay", SEED003_CASES)
def test_seed003_sqrt_hold_cosine(total, args, max_iters, decay):
    overrides = {"warmup_iters": int(max_iters * 0.03), "min_lr": LR / 25}
    expected = [seed003_second(it, overrides["warmup_iters"], decay, LR, overrides["min_lr"]) / LR
                for it in range(total)]
    assert_matches(get_preset("seed003_sqrt_hold_cosine", **args), total, expected)


def test_seed003_first_is_expressible_as_segments():
    """The fractional two-stage form of seed 003 #1 tracks the integer source to O(1/T)."""
    min_lr, mid = 1 / 20, 1 / 20 + 0.35 * (1 - 1 / 20)
    segments = schedule_from_dict({"start": 0.0, "segments": [
        {"duration": 0.02, "end": 1.0, "curve": "linear"},
        {"duration": 0.68, "end": 1.0, "curve": "linear"},
        {"duration": 0.20, "end": mid, "curve": "cosine"},
        {"duration": 0.10, "end": min_lr, "curve": "polynomial", "exponent": 2.0},
    ]})
    total = 12030
    source = get_preset("seed003_hold_cosine_poly").multipliers(total)
    assert np.max(np.abs(segments.multipliers(total) - source)) < 5e-3
    assert segments.multiplier(total - 1, total) == min_lr


# -- shapes by name: independent formulas -------------------------------------------------------------------

def x_of(s, total):
    return s / (total - 1) if total > 1 else 0.0


@pytest.mark.parametrize("total, cooldown, floor, warmup", [(1000, 0.2, 0.0, 0.02), (257, 0.3, 0.1, 0.0)])
def test_wsd_sqrt(total, cooldown, floor, warmup):
    def expected(s):
        x = x_of(s, total)
        if x < warmup:
            return x / warmup
        if x < 1 - cooldown:
            return 1.0
        t = (x - (1 - cooldown)) / cooldown
        return floor + (1 - floor) * (1 - math.sqrt(t))

    preset = get_preset("wsd_sqrt", cooldown_frac=cooldown, floor=floor, warmup_frac=warmup)
    np.testing.assert_allclose(preset.multipliers(total), [expected(s) for s in range(total)], atol=1e-12)
    assert preset.multiplier(total - 1, total) == floor


def test_wsd_exp_and_linear_to_zero():
    total = 501
    wsd = get_preset("wsd_exp", cooldown_frac=0.1, floor=0.01, warmup_frac=0.0).multipliers(total)
    k = 5.0
    for s in range(total):
        x = x_of(s, total)
        want = 1.0 if x < 0.9 else 0.01 + 0.99 * (math.exp(-k * (x - 0.9) / 0.1) - math.exp(-k)) / (1 - math.exp(-k))
        assert wsd[s] == pytest.approx(want, abs=1e-12)
    ltz = get_preset("linear_to_zero", warmup_frac=0.1).multipliers(total)
    want = [x_of(s, total) / 0.1 if x_of(s, total) < 0.1 else 1 - (x_of(s, total) - 0.1) / 0.9 for s in range(total)]
    np.testing.assert_allclose(ltz, want, atol=1e-12)
    assert ltz[-1] == 0.0 and ltz[0] == 0.0
    np.testing.assert_array_equal(get_preset("constant").multipliers(17), np.ones(17))


# -- registry behaviour --------------------------------------------------------------------------------------

EXPECTED_NAMES = ["nanogpt_cosine", "pgolf_warmdown", "seed000_cosine", "seed003_hold_cosine_poly",
                  "seed003_sqrt_hold_cosine", "wsd_sqrt", "wsd_exp", "linear_to_zero", "constant"]


def test_names_are_stable():
    assert list_presets() == EXPECTED_NAMES


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_round_trip_and_any_horizon(name):
    preset = get_preset(name)
    assert schedule_from_dict(preset.to_dict()) == preset
    assert preset.flat_params()["preset"] == name
    for total in (1, 2, 10, 1001):
        values = preset.multipliers(total)
        assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))


def test_flat_params_resolve_defaults():
    params = get_preset("wsd_sqrt", floor=0.1).flat_params()
    assert params == {"kind": "preset", "preset": "wsd_sqrt", "warmup_frac": 0.02, "cooldown_frac": 0.2, "floor": 0.1}
    assert "lr_decay_iters" not in get_preset("nanogpt_cosine").flat_params()  # derived from T, unknown here


def test_round_trip_with_args():
    preset = get_preset("nanogpt_cosine", warmup_iters=10, min_lr_ratio=0.05)
    assert preset.to_dict() == {"preset": "nanogpt_cosine", "warmup_iters": 10, "min_lr_ratio": 0.05}
    assert schedule_from_dict(preset.to_dict()) == preset


@pytest.mark.parametrize("d, field", [
    ({"preset": "nope"}, "preset"),
    ({"preset": 3}, "preset"),
    ({"preset": "wsd_sqrt", "cooldown": 0.2}, "cooldown"),
    ({"preset": "wsd_sqrt", "cooldown_frac": 1.5}, "cooldown_frac"),
    ({"preset": "wsd_sqrt", "cooldown_frac": "0.2"}, "cooldown_frac"),
    ({"preset": "wsd_sqrt", "cooldown_frac": 0.99, "warmup_frac": 0.05}, "cooldown_frac"),
    ({"preset": "wsd_exp", "floor": 1.0}, "floor"),
    ({"preset": "nanogpt_cosine", "warmup_iters": 2.5}, "warmup_iters"),
    ({"preset": "nanogpt_cosine", "warmup_iters": 100, "lr_decay_iters": 100}, "warmup_iters"),
    ({"preset": "pgolf_warmdown", "iterations": 0}, "iterations"),
])
def test_bad_preset_args(d, field):
    with pytest.raises(ConfigError) as info:
        schedule_from_dict(d)
    assert info.value.field == field


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(EXPECTED_NAMES), st.integers(1, 3000), st.data())
def test_any_horizon_property(name, total, data):
    """Every preset, at any horizon and with default args: finite, in [0, 1], scalar == vector."""
    preset = get_preset(name)
    values = preset.multipliers(total)
    assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))
    step = data.draw(st.integers(0, total - 1))
    assert preset.multiplier(step, total) == values[step]
