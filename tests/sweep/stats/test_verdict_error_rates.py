"""Error rates of the verdicts, proved by simulation through the project's own report and confirmation code.

A smaller version of `benchmarks/verdict_error_rates.py` (whose figures, over 2,000 reports each, are in
BENCHMARKS.md). Each claim is checked with an exact binomial test against the rate it promises, so a test
fails only when the data are very unlikely under the claim (p < 0.001), and each has a control showing that
the same simulation does catch the error without the protection (the test can fail).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import verdict_error_rates as ver  # noqa: E402

from sweep.analysis.content import compare_with_baselines  # noqa: E402
from sweep.stats.verdicts import CALLED, CORRECTIONS  # noqa: E402

ALPHA = ver.ALPHA


@pytest.fixture(scope="module", autouse=True)
def _frozen_gc():
    ver.null_floor()
    gc.freeze()  # statsmodels' Holm calls gc.collect(); keep it cheap
    yield
    gc.unfreeze()


def consistent_with_at_most(count: int, n: int, p: float) -> bool:
    """Is `count` successes of `n` consistent with a true rate <= p (one-sided exact binomial, level 0.001)?"""
    return stats.binomtest(count, n, p, alternative="greater").pvalue >= 0.001


def test_the_benchmark_shortcut_equals_calling_the_report_per_correction() -> None:
    world = ver.World.build(8, 3, n_true=2)
    for r in range(3):
        groups = ver.sweep_records(world, ver.sim_config(50 + r), [0, 1, 2, 3])
        fast = ver.report_verdicts(groups, tuple(CORRECTIONS))
        for c in CORRECTIONS:
            rows = compare_with_baselines(groups, ALPHA, correction=c, total_steps=ver.T)
            slow = [x.comparison for x in rows if x.comparison is not None and x.comparison.verdict in CALLED]
            assert [(x.candidate, x.baseline, x.verdict) for x in fast[c]] == \
                [(x.candidate, x.baseline, x.verdict) for x in slow]


@pytest.mark.slow
def test_a_null_report_holds_a_false_verdict_at_most_alpha_of_the_time() -> None:
    # 30 shapes x 5 baselines + 10 baseline pairs = 160 comparisons, 3 seeds, no shape truly differs.
    n = 250
    out = ver.null_family(n, corrections=("holm", "bonferroni", "none"), first_noise_seed=7_000)
    assert out["comparisons"] == 160
    for c in ("holm", "bonferroni"):
        assert consistent_with_at_most(out["fwer"][c]["count"], n, ALPHA), out["fwer"][c]
    # Control: without a correction, most null reports hold a false call (the rate measured before this fix).
    assert out["fwer"]["none"]["rate"] > 0.5 and out["false_calls_per_report"]["none"] > 1.0


def test_benjamini_hochberg_keeps_the_false_discovery_rate_with_real_effects() -> None:
    n = 100
    out = ver.mixed_family(n, corrections=("fdr_bh", "holm", "none"), first_noise_seed=8_000)
    # The mean false-discovery proportion is an average of values in [0, 1]: a one-sided z bound at 3 SE of
    # a Bernoulli(alpha) average is conservative for it.
    bound = ALPHA + 3 * (ALPHA * (1 - ALPHA) / n) ** 0.5
    assert out["fdr"]["fdr_bh"] <= bound and out["fdr"]["holm"] <= bound, out["fdr"]
    assert out["fdr"]["none"] > 0.04  # control: 124 null comparisons at alpha 0.01 make false discoveries
    assert out["power"]["fdr_bh"]["rate"] >= out["power"]["holm"]["rate"] > 0  # BH finds at least what Holm does


@pytest.mark.slow
def test_the_winner_of_a_null_sweep_confirmed_on_fresh_seeds_is_called_better_at_most_alpha() -> None:
    n = 150
    out = ver.selection(n, first_noise_seed=9_000)
    fresh = out["confirm_better_than_any_baseline"]["fresh seeds, holm 0.01 (default)"]
    assert consistent_with_at_most(fresh["count"], n, ALPHA), fresh
    assert consistent_with_at_most(out["winner_called_better_in_sweep_report"]["holm (now)"]["count"], n, ALPHA)
    # Control: the old confirmation (the sweep's own seeds reused, a 95 % interval, no correction) calls the
    # null winner better than some baseline far more often.
    before = out["confirm_better_than_any_baseline"]["reused seeds, 95 % CI, no correction (before)"]
    assert before["rate"] > 0.15, before


@pytest.mark.slow
def test_power_for_a_true_effect_is_at_least_what_plan_seeds_predicts() -> None:
    # A shape truly better by 2 x the paired seed std, 5 seeds: alone against one baseline (the planner's
    # exact power at alpha 0.01), and among 30 shapes (the planner at alpha / 30, a lower bound for Holm).
    n = 250
    out = ver.power_vs_planner(n, first_noise_seed=10_000)["results"]
    for name, r in out.items():
        # Observed power is not significantly below the prediction (one-sided exact binomial, level 0.001).
        assert stats.binomtest(r["count"], n, r["planner"], alternative="less").pvalue >= 0.001, (name, r)
    alone = out["family of 1"]
    assert abs(alone["rate"] - alone["planner"]) < 0.12  # and close to it where the planner is exact
