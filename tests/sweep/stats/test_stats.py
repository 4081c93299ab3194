"""Seed-group statistics against values worked out by hand (t critical values from a printed t-table)."""

import math

import pytest

from sweep.stats.seeds import seed_stats

# Two-sided 95 % critical values of Student's t, as printed in any t-table.
T_975 = {1: 12.706, 2: 4.303, 4: 2.776}


def test_three_seeds_matches_hand_computation():
    s = seed_stats([1.0, 2.0, 3.0])
    # mean 2, squared deviations 1 + 0 + 1 = 2, /(n-1) = 1 -> std 1
    assert s.n == 3
    assert s.mean == 2.0
    assert s.std == pytest.approx(1.0, abs=1e-12)
    half = T_975[2] * 1.0 / math.sqrt(3)  # 2.4843
    assert s.half_width == pytest.approx(half, abs=1e-3)
    assert s.ci_low == pytest.approx(2.0 - half, abs=1e-3)
    assert s.ci_high == pytest.approx(2.0 + half, abs=1e-3)


def test_five_losses_small_spread():
    # deviations from 3.11: -0.01 0.01 0 0.02 -0.02 -> sum of squares 0.001 -> var 0.00025
    s = seed_stats([3.10, 3.12, 3.11, 3.13, 3.09])
    assert s.mean == pytest.approx(3.11, abs=1e-12)
    assert s.std == pytest.approx(math.sqrt(0.00025), rel=1e-9)
    assert s.half_width == pytest.approx(T_975[4] * 0.0158114 / math.sqrt(5), abs=1e-4)  # 0.01963
    assert s.ci_low < 3.11 < s.ci_high


def test_two_seeds_wide_interval():
    s = seed_stats([0.0, 2.0])
    # std = sqrt(2), half = 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert s.std == pytest.approx(math.sqrt(2.0), rel=1e-12)
    assert s.half_width == pytest.approx(T_975[1], abs=1e-3)


def test_float64_sum_keeps_tiny_differences():
    # Values around 1e8 with spread 1e-3 lose precision in float32; the mean must still be exact.
    base = 1.0e8
    s = seed_stats([base + 0.001, base + 0.002, base + 0.003])
    assert s.mean == pytest.approx(base + 0.002, abs=1e-6)
    assert s.std == pytest.approx(0.001, rel=1e-3)


def test_single_seed_has_no_spread():
    s = seed_stats([4.2])
    assert s.mean == 4.2 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    assert s.as_metrics("val_loss") == {"val_loss_mean": 4.2, "val_loss_n": 1.0}


def test_as_metrics_names():
    m = seed_stats([1.0, 2.0, 3.0]).as_metrics("val_bpb")
    assert set(m) == {"val_bpb_mean", "val_bpb_std", "val_bpb_ci95_low", "val_bpb_ci95_high",
                      "val_bpb_ci95_half_width", "val_bpb_n"}


def test_other_confidence_level():
    s = seed_stats([1.0, 2.0, 3.0], confidence=0.90)
    # t_{0.95, 2} = 2.920 from the table
    assert s.half_width == pytest.approx(2.920 / math.sqrt(3), abs=1e-3)
    assert "val_loss_ci90_low" in s.as_metrics("val_loss")


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf"), 1.0]])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        seed_stats(bad)


def test_bad_confidence_raises():
    with pytest.raises(ValueError):
        seed_stats([1.0, 2.0], confidence=1.0)
