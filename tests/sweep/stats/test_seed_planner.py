"""Seed-budget planner: exact power checked against simulation, the answer, the warning and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from search_spaces.errors import ConfigError
from sweep.cli import main
from sweep.stats.planning import (detectable_effect, difference_std_from_group, measure_noise, paired_power, paired_std,
                                  plan_seeds, pooled_std, required_seeds, seed_warning)


def simulated_power(n: int, effect: float, std: float, alpha: float, reps: int = 40_000, seed: int = 0) -> float:
    """Fraction of simulated n-pair experiments in which the two-sided paired t-test rejects at alpha."""
    diffs = np.random.default_rng(seed).normal(effect, std, size=(reps, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    return float(np.mean(p < alpha))


@pytest.mark.parametrize("n", [3, 6, 10])
def test_exact_power_matches_simulated_t_tests(n):
    exact = paired_power(n, 0.002, 0.0014, 0.01)
    # 40k replications: binomial standard error <= 0.0025, so 0.01 is four standard errors.
    assert exact == pytest.approx(simulated_power(n, 0.002, 0.0014, 0.01), abs=0.01)


def test_power_with_no_effect_is_alpha_and_normal_approximation_would_overpromise():
    assert paired_power(5, 1e-12, 1.0, 0.01) == pytest.approx(0.01, abs=1e-9)
    n, d = 5, 0.002 / 0.0014
    z = stats.norm.ppf(1 - 0.005)
    normal_approx = stats.norm.sf(z - d * math.sqrt(n))
    assert normal_approx > paired_power(n, 0.002, 0.0014, 0.01) + 0.2


def test_required_seeds_is_the_smallest_n_reaching_the_target():
    n = required_seeds(0.002, 0.0014)
    assert n == 10  # 9 pairs: power 0.788; 10 pairs: 0.860 (exact noncentral t)
    assert paired_power(n, 0.002, 0.0014) >= 0.8 > paired_power(n - 1, 0.002, 0.0014)
    big = required_seeds(0.0005, 0.0014)
    assert paired_power(big, 0.0005, 0.0014) >= 0.8 > paired_power(big - 1, 0.0005, 0.0014)
    assert required_seeds(1e-6, 1.0, max_seeds=50) is None


def test_plan_table_contains_the_answer_and_stays_short():
    plan = plan_seeds(0.0005, 0.0014)
    ns = [n for n, _ in plan.rows]
    assert plan.required in ns and plan.required - 1 in ns and len(ns) <= 22
    assert all(a < b for a, b in zip(ns, ns[1:]))


def test_seed_warning():
    assert seed_warning(12, 0.002, 0.0014) is None
    msg = seed_warning(3, 0.002, 0.0014)
    assert msg is not None and "3 seeds" in msg and "10 seeds are needed" in msg and "7%" in msg


def test_std_from_measured_groups():
    values = [3.301, 3.299, 3.302, 3.298]
    assert difference_std_from_group(values) == pytest.approx(math.sqrt(2) * np.std(values, ddof=1))
    a = {"0": 3.30, "1": 3.31, "2": 3.29}
    b = {"0": 3.31, "1": 3.321, "2": 3.299}  # b - a = 0.010, 0.011, 0.009: shared seed effect removed
    assert paired_std(a, b) == pytest.approx(0.001, rel=1e-6)
    with pytest.raises(ValueError):
        difference_std_from_group([3.3])


def test_validation_names_the_field():
    with pytest.raises(ConfigError) as err:
        required_seeds(0.0, 0.0014)
    assert err.value.field == "effect"
    with pytest.raises(ConfigError) as err:
        paired_power(5, 0.002, 0.0014, alpha=1.5)
    assert err.value.field == "alpha"


def test_cli_prints_table_and_answer(capsys):
    assert main(["plan-seeds", "--effect", "0.002", "--std", "0.0014"]) == 0
    out = capsys.readouterr().out
    assert "10 seeds needed for power 0.8 at alpha 0.01" in out
    assert any(line.split()[:1] == ["10"] and "<- needed" in line for line in out.splitlines())


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--effect", "0", "--std", "0.0014"], "--effect"),
        (["--effect", "0.002", "--std", "-1"], "--std"),
        (["--effect", "0.002", "--std", "0.0014", "--alpha", "0"], "--alpha"),
        (["--effect", "0.002", "--std", "0.0014", "--power", "1.2"], "--power"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_option(argv, option, capsys):
    assert main(["plan-seeds", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"sweep: error: {option}: ")


def test_cli_unreachable_target_exits_1(capsys):
    assert main(["plan-seeds", "--effect", "1e-6", "--std", "1", "--max-seeds", "30"]) == 1
    assert "more than 30 seeds needed" in capsys.readouterr().out


def test_cli_defaults_mirror_the_planner():
    """`sweep plan-seeds` keeps copies of the planner's defaults (to keep scipy out of CLI start-up)."""
    from sweep.stats import planning as seed_planner
    from sweep.commands import plan_seeds as command

    assert (command.DEFAULT_ALPHA, command.DEFAULT_POWER, command.MAX_SEEDS) == (
        seed_planner.DEFAULT_ALPHA, seed_planner.DEFAULT_POWER, seed_planner.MAX_SEEDS)


@pytest.mark.parametrize("n", [2, 4, 9])
def test_detectable_effect_inverts_the_power(n):
    effect = detectable_effect(n, 0.0014)
    assert paired_power(n, effect, 0.0014) == pytest.approx(0.8, abs=1e-6)
    assert paired_power(n, effect * 0.99, 0.0014) < 0.8 < paired_power(n, effect * 1.01, 0.0014)
    assert simulated_power(n, effect, 0.0014, 0.01) == pytest.approx(0.8, abs=0.01)
    assert detectable_effect(1, 0.0014) is None


def test_two_seed_power_stays_finite():
    # scipy's nct.cdf gave NaN in the lower tail for 1 degree of freedom and a large noncentrality.
    powers = [paired_power(2, e, 0.0014) for e in np.linspace(0.001, 0.5, 200)]
    assert all(math.isfinite(p) for p in powers) and powers == sorted(powers)


def test_pooled_std_and_measured_noise():
    a, b, c = [3.30, 3.31, 3.29], [3.32, 3.335, 3.31], [2.0]
    std, df = pooled_std([a, b, c])  # the one-value group carries no spread
    assert df == 4
    assert std == pytest.approx(math.sqrt((np.var(a, ddof=1) * 2 + np.var(b, ddof=1) * 2) / 4), rel=1e-12)
    assert pooled_std([[1.0], []]) is None
    noise = measure_noise({"x": dict(enumerate(a)), "y": dict(enumerate(b)), "z": {0: 1.0}})
    assert noise.pairs == (("x", "y"),) and noise.paired_df == 2  # z shares a single seed: no pair
    assert noise.paired_std == pytest.approx(np.std(np.subtract(b, a), ddof=1), rel=1e-12)
    assert noise.planning_std()[0] == noise.paired_std
    alone = measure_noise({"x": dict(enumerate(a))})
    assert alone.paired_std is None and alone.planning_std()[0] == pytest.approx(math.sqrt(2) * np.std(a, ddof=1))
