"""Paired seed-group comparisons: hand-computed values, scipy references, and verdicts only past alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sweep.stats.verdicts import (BETTER, CORRECTIONS, NO_DIFFERENCE, NO_VERDICT, WILCOXON_MIN_N, WORSE,
                                  UnmatchedSeedsError, compare_to_baselines, family_verdicts, min_wilcoxon_n,
                                  paired_comparison, without_verdict)


def test_hand_computed_three_seed_comparison():
    base = {0: 3.300, 1: 3.310, 2: 3.290}
    cand = {0: 3.296, 1: 3.304, 2: 3.288}  # diffs -0.004, -0.006, -0.002
    c = paired_comparison(cand, base, confidence=0.95)
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


def test_identical_differences_get_no_verdict_not_certainty():
    # A trainer that ignores its seed gives every seed the same difference: std 0 is not "certainly
    # different", it is no noise to test against (a hard-coded seed, or a schedule that is not read).
    base = {s: 3.0 + 0.5 * s for s in range(3)}
    shifted = {s: v - 0.125 for s, v in base.items()}  # exact in binary: the differences are all equal
    c = paired_comparison(shifted, base)
    assert c.std_diff == 0.0 and math.isnan(c.t_pvalue) and c.verdict == NO_VERDICT
    assert "std 0" in c.reason and "ignore its seed" in c.reason
    same = paired_comparison(base, base)
    assert same.verdict == NO_VERDICT and not same.testable


def test_two_seeds_get_no_verdict():
    c = paired_comparison({0: 2.90, 1: 2.95}, {0: 3.00, 1: 3.04})
    assert c.verdict == NO_VERDICT and c.reason.startswith("2 seeds: a paired test needs at least 3")
    assert math.isfinite(c.mean_diff) and math.isnan(c.t_pvalue)


def test_spread_below_the_metric_resolution_gets_no_verdict():
    # A script printing 3 decimals: the differences -0.001, -0.002, -0.001, -0.001 look "significant", but
    # their spread is one rounding step.
    base = {s: 3.100 + 0.010 * s for s in range(4)}
    cand = {s: v - d for (s, v), d in zip(base.items(), (0.001, 0.002, 0.001, 0.001))}
    assert paired_comparison(cand, base, alpha=0.05).verdict == BETTER  # without knowing the resolution
    c = paired_comparison(cand, base, alpha=0.05, resolution=0.001)
    assert c.verdict == NO_VERDICT and "resolution 0.001" in c.reason


def test_family_adjustment_is_statsmodels_and_every_interval_matches_its_verdict():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    comparisons = []
    for k in range(40):  # a mix of null pairs and real effects of several sizes
        effect = [0.0, 0.0, -0.002, 0.004, -0.01][k % 5]
        base = 3.3 + rng.normal(0, 0.01, 5)
        cand = base + effect + rng.normal(0, 0.0015, 5)
        comparisons.append(paired_comparison(dict(enumerate(cand)), dict(enumerate(base)), names=(f"s{k}", "b")))
    raw = np.array([c.t_pvalue for c in comparisons])
    for method in CORRECTIONS:
        out = family_verdicts(comparisons, alpha=0.01, correction=method)
        if method == "none":
            expected_reject, expected_adj = raw <= 0.01, raw
        else:
            expected_reject, expected_adj, _, _ = multipletests(raw, alpha=0.01, method=method)
        assert [c.adjusted_pvalue for c in out] == pytest.approx(list(expected_adj), rel=1e-12)
        assert [c.verdict != NO_DIFFERENCE for c in out] == list(expected_reject)
        assert {c.family_size for c in out} == {40} and {c.correction for c in out} == {method}
        for c in out:  # the interval shown excludes 0 exactly when a verdict is called
            assert (c.ci_high < 0 or c.ci_low > 0) == (c.verdict in (BETTER, WORSE)), (method, c.summary())
        if method == "bonferroni":
            assert {round(c.confidence, 12) for c in out} == {round(1 - 0.01 / 40, 12)}
    holm = family_verdicts(comparisons, 0.01, "holm")
    bonf = family_verdicts(comparisons, 0.01, "bonferroni")
    none = family_verdicts(comparisons, 0.01, "none")
    called = [sum(c.verdict != NO_DIFFERENCE for c in out) for out in (bonf, holm, none)]
    assert 0 < called[0] <= called[1] <= called[2]  # Holm is never less powerful than Bonferroni


def test_untestable_comparisons_stay_out_of_the_family():
    rng = np.random.default_rng(3)
    base = 3.0 + rng.normal(0, 0.01, 4)
    good = paired_comparison(dict(enumerate(base - 0.01 + rng.normal(0, 0.001, 4))), dict(enumerate(base)))
    flat = paired_comparison(dict(enumerate(base - 0.01)), dict(enumerate(base - 0.01 + 0.0)))
    held = without_verdict(good, "seeds of s identical")
    out = family_verdicts([good, flat, held], 0.01, "bonferroni")
    assert out[0].family_size == 1 and out[0].adjusted_pvalue == pytest.approx(good.t_pvalue)
    assert out[1].verdict == NO_VERDICT and out[2].verdict == NO_VERDICT and out[2].reason == "seeds of s identical"


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
    assert math.isnan(c.t_pvalue) and c.verdict == NO_VERDICT and "n/a" in c.summary()


def test_compare_to_baselines_pairs_every_shape_with_every_baseline():
    groups = {
        "cosine": {"0": 3.0, "1": 3.1, "2": 3.2},
        "linear": {"0": 3.0, "1": 3.1, "2": 3.2},
        "wsd": {"0": 2.99, "1": 3.09, "2": 3.19},
    }
    out = compare_to_baselines(groups, ["cosine", "linear"])
    assert [(c.candidate, c.baseline) for c in out] == [("wsd", "cosine"), ("wsd", "linear")]
    assert all(c.correction == "holm" for c in out)
    with pytest.raises(ValueError, match="baseline groups not found: nope"):
        compare_to_baselines(groups, ["nope"])
