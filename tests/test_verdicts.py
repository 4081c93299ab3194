"""Paired seed-group comparisons: hand-computed values, scipy references, and verdicts only past alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sweep.verdicts import (
    BETTER, NO_DIFFERENCE, WILCOXON_MIN_N, WORSE, UnmatchedSeedsError, compare_to_baselines, min_wilcoxon_n,
    paired_comparison,
)


def test_hand_computed_three_seed_comparison():
    base = {0: 3.300, 1: 3.310, 2: 3.290}
    cand = {0: 3.296, 1: 3.304, 2: 3.288}  # diffs -0.004, -0.006, -0.002
    c = paired_comparison(cand, base)
    # mean -0.004, sample std 0.002, se 0.002/sqrt(3), t = -2*sqrt(3) = -3.4641, df 2
    assert c.mean_diff == pytest.approx(-0.004, abs=1e-12)
    assert c.std_diff == pytest.approx(0.002, abs=1e-12)
    t_crit = 4.302652729911275  # t_{0.975, 2}, from tables
    half = t_crit * 0.002 / math.sqrt(3)
    assert (c.ci_low, c.ci_high) == pytest.approx((-0.004 - half, -0.004 + half), abs=1e-12)
    # Two-sided p for t = 2*sqrt(3) with 2 df has a closed form: 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    assert c.t_pvalue == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-10)
    assert c.t_pvalue == pytest.approx(stats.ttest_rel([3.296, 3.304, 3.288], [3.300, 3.310, 3.290]).pvalue, rel=1e-9)
    # p = 0.074: every seed "won", yet at alpha 0.01 that is within noise.
    assert c.verdict == NO_DIFFERENCE
    assert c.wilcoxon_pvalue is None  # 3 pairs can never reach p < 0.01 with an exact signed-rank test
    assert c.seeds == ("0", "1", "2")


def test_single_seed_wins_within_noise_are_not_called():
    # Four seeds, the candidate "wins" on three by about a thousandth: typical seed noise (std 0.0014).
    base = {s: 3.30 + d for s, d in enumerate([0.0010, -0.0020, 0.0005, 0.0015])}
    cand = {s: 3.30 + d for s, d in enumerate([-0.0003, -0.0031, 0.0021, 0.0006])}
    c = paired_comparison(cand, base, names=("wsd", "cosine"))
    assert c.mean_diff < 0 and sum(d < 0 for d in c.diffs) == 3
    assert c.t_pvalue > 0.1
    assert c.ci_low < 0 < c.ci_high
    assert c.verdict == NO_DIFFERENCE
    assert c.summary().startswith("wsd vs cosine: -0.0")


def test_clear_effect_over_ten_seeds_is_better_and_wilcoxon_is_exact():
    rng = np.random.default_rng(0)
    base_vals = 3.3 + rng.normal(0, 0.01, 10)  # large shared seed effect, cancels in the pairing
    diffs = -0.004 + rng.normal(0, 0.0014, 10)
    assert np.all(diffs < 0)
    c = paired_comparison(dict(enumerate(base_vals + diffs)), dict(enumerate(base_vals)))
    assert c.verdict == BETTER
    assert c.t_pvalue == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
    # All ten differences negative: exact two-sided signed-rank p = 2 / 2^10.
    assert c.wilcoxon_pvalue == pytest.approx(2 / 1024, rel=1e-12)
    # The unpaired view of the same numbers cannot see it: the seed effect (0.01) swamps 0.004.
    assert stats.ttest_ind(base_vals + diffs, base_vals).pvalue > 0.01


def test_worse_and_higher_is_better():
    base = {s: 1.0 for s in range(5)}
    cand = {s: 1.0 + 0.01 + 0.001 * s for s in range(5)}
    assert paired_comparison(cand, base).verdict == WORSE
    assert paired_comparison(cand, base, lower_is_better=False).verdict == BETTER


def test_noiseless_identical_shift_and_identical_values():
    base = {s: 3.0 + 0.5 * s for s in range(3)}
    shifted = {s: v - 0.125 for s, v in base.items()}  # exact in binary: the differences are all equal
    c = paired_comparison(shifted, base)
    assert c.std_diff == 0.0 and c.t_pvalue == 0.0 and c.verdict == BETTER
    same = paired_comparison(base, base)
    assert same.t_pvalue == 1.0 and same.verdict == NO_DIFFERENCE


def test_wilcoxon_threshold():
    assert min_wilcoxon_n(0.01) == WILCOXON_MIN_N == 8
    assert 2 / 2**7 > 0.01 > 2 / 2**8
    base = {s: 3.0 for s in range(8)}
    cand = {s: 2.99 - 0.001 * s for s in range(8)}
    assert paired_comparison(cand, base).wilcoxon_pvalue == pytest.approx(2 / 256)
    seven = {s: v for s, v in cand.items() if s < 7}
    assert paired_comparison(seven, {s: 3.0 for s in range(7)}).wilcoxon_pvalue is None


def test_unmatched_seeds_are_refused_naming_them():
    with pytest.raises(UnmatchedSeedsError, match=r"seeds 3 only in wsd; seeds 4 only in cosine"):
        paired_comparison({0: 1.0, 1: 1.0, 3: 1.0}, {0: 1.0, 1: 1.0, 4: 1.0}, names=("wsd", "cosine"))
    with pytest.raises(ValueError, match="non-finite"):
        paired_comparison({0: math.nan, 1: 1.0}, {0: 1.0, 1: 1.0})


def test_single_pair_has_no_p_value_and_no_verdict():
    c = paired_comparison({0: 2.9}, {0: 3.0})
    assert math.isnan(c.t_pvalue) and c.verdict == NO_DIFFERENCE and "n/a" in c.summary()


def test_compare_to_baselines_pairs_every_shape_with_every_baseline():
    groups = {
        "cosine": {"0": 3.0, "1": 3.1, "2": 3.2},
        "linear": {"0": 3.0, "1": 3.1, "2": 3.2},
        "wsd": {"0": 2.99, "1": 3.09, "2": 3.19},
    }
    out = compare_to_baselines(groups, ["cosine", "linear"])
    assert [(c.candidate, c.baseline) for c in out] == [("wsd", "cosine"), ("wsd", "linear")]
    with pytest.raises(ValueError, match="baseline groups not found: nope"):
        compare_to_baselines(groups, ["nope"])
