"""How many seeds a paired comparison of two schedule shapes needs to resolve a given effect.

The test planned for is the one `sweep.stats.verdicts` runs: a two-sided paired t-test on per-seed differences
(candidate minus baseline over the same seeds) at level ``alpha`` (0.01). With n pairs, true mean
difference ``effect`` and standard deviation ``std`` of the *paired differences*, the t statistic follows
a noncentral t distribution with n - 1 degrees of freedom and noncentrality ``effect / std * sqrt(n)``, so
the power is exact:

    power(n) = P(T' > t_crit) + P(T' < -t_crit),   T' ~ nct(n - 1, effect / std * sqrt(n)),
    t_crit   = t_{1 - alpha/2, n - 1}

(no normal approximation: with 3-10 seeds it would promise far too much power).

A report tests many comparisons as one family (`sweep.stats.verdicts.family_verdicts`), so each one is held to a
stricter level than alpha. `family_alpha` gives the level planned for: alpha / m for m comparisons under
Holm, Bonferroni or Benjamini-Hochberg. It is exact for Bonferroni and conservative for the other two (Holm
tests all but the smallest p at a looser level, and BH looser still when several effects are real), so the
power promised here is a lower bound on what a report delivers.

Which std: the std of the per-seed *differences*, not of one group's final losses. If the seeds of two
groups were independent the first would be ``sqrt(2)`` times the second; in practice a seed (initialisation,
data order) moves both groups the same way, and the difference std is smaller. Measure it where you can:
`paired_std` over two groups that ran the same seeds (two baselines of a finished sweep), else
`difference_std_from_group` turns one group's per-seed values into the independent-seeds bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Mapping, Sequence

from scipy import optimize as _optimize
from scipy import stats as _stats

from search_spaces.errors import ConfigError
from search_spaces.validation import check_int, check_number
from sweep.stats.verdicts import MIN_PAIRS, paired_comparison

DEFAULT_ALPHA = 0.01
DEFAULT_POWER = 0.8
MAX_SEEDS = 10_000


def _positive(value: float, field: str) -> float:
    return check_number(value, field, lo=0.0, lo_open=True)


def _fraction(value: float, field: str) -> float:
    return check_number(value, field, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def family_alpha(alpha: float, comparisons: int = 1, correction: str = "holm") -> float:
    """The per-comparison level to plan for when `comparisons` verdicts are tested as one family."""
    check_int(comparisons, "comparisons", minimum=1)
    return alpha if correction == "none" else alpha / comparisons


def paired_power(n: int, effect: float, std: float, alpha: float = DEFAULT_ALPHA) -> float:
    """Exact power of the two-sided paired t-test with `n` pairs (0 for n < 2: no test exists)."""
    effect, std = _positive(abs(effect), "effect"), _positive(std, "std")
    alpha = _fraction(alpha, "alpha")
    if n < 2:
        return 0.0
    df = n - 1
    t_crit = float(_stats.t.ppf(1.0 - alpha / 2.0, df))
    nc = effect / std * math.sqrt(n)
    # The lower tail P(T' < -t_crit) is written as P(T'(-nc) > t_crit): scipy's nct.cdf returned NaN there
    # for large nc with one degree of freedom (two seeds), while sf stays finite.
    return float(_stats.nct.sf(t_crit, df, nc) + _stats.nct.sf(t_crit, df, -nc))


def required_seeds(
    effect: float, std: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER, max_seeds: int = MAX_SEEDS,
) -> int | None:
    """Smallest n whose paired t-test reaches `power`; None when more than `max_seeds` are needed. Never
    below `sweep.stats.verdicts.MIN_PAIRS` (3): a report calls no verdict on fewer seeds, whatever the power.

    Power grows monotonically with n here (more pairs: larger noncentrality, smaller critical value), so
    a doubling search followed by bisection finds the smallest n in O(log n) power evaluations.
    """
    _positive(effect, "effect"), _positive(std, "std"), _fraction(alpha, "alpha"), _fraction(power, "power")
    if paired_power(max_seeds, effect, std, alpha) < power:
        return None
    lo, hi = 1, 2  # invariant: power(lo) < target <= power(hi) once hi is found
    while paired_power(hi, effect, std, alpha) < power:
        lo, hi = hi, min(2 * hi, max_seeds)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_power(mid, effect, std, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return max(hi, MIN_PAIRS)


@dataclass(frozen=True)
class SeedPlan:
    """The answer and the table behind it: `rows` are (n, power) for the n values shown."""

    effect: float
    std: float
    alpha: float
    power: float
    required: int | None
    rows: tuple[tuple[int, float], ...]


def plan_seeds(
    effect: float, std: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER, max_seeds: int = MAX_SEEDS,
) -> SeedPlan:
    """`required_seeds` plus a table of power at every n up to a little past the answer.

    Up to 20 rows: every n when the answer is small, otherwise evenly spread n values that always include
    the answer and its predecessor (where the power crosses the target).
    """
    need = required_seeds(effect, std, alpha, power, max_seeds)
    last = min((need if need is not None else max_seeds) + 2, max_seeds)
    if last <= 21:
        ns = list(range(2, last + 1))
    else:
        step = max(1, (last - 2) // 16)
        ns = sorted(set(range(2, last + 1, step)) | ({need - 1, need} if need else set()) | {last})
    rows = tuple((n, paired_power(n, effect, std, alpha)) for n in ns)
    return SeedPlan(effect=effect, std=std, alpha=alpha, power=power, required=need, rows=rows)


def seed_warning(n_seeds: int, effect: float, std: float, alpha: float = DEFAULT_ALPHA,
                 power: float = DEFAULT_POWER, comparisons: int = 1, correction: str = "holm") -> str | None:
    """A warning when `n_seeds` cannot resolve `effect` at `alpha` with `power`, else None.

    `std` is the std of paired per-seed differences (see the module docstring); `comparisons` the size of
    the family the verdict will be tested in. Meant for the sweep config: a sweep over 3 seeds that targets
    0.002-nat effects will mostly report "no detectable difference".
    """
    level = family_alpha(alpha, comparisons, correction)
    # Below MIN_PAIRS seeds the report calls no verdict at all, whatever the t-test's power would be.
    have = paired_power(n_seeds, effect, std, level) if n_seeds >= MIN_PAIRS else 0.0
    if have >= power:
        return None
    need = required_seeds(effect, std, level, power)
    needed = f"{need} seeds are needed" if need is not None else f"more than {MAX_SEEDS} seeds would be needed"
    family = (f" (family of {comparisons} comparisons, {correction}: {level:.2g} per comparison)"
              if comparisons > 1 and correction != "none" else "")
    return (
        f"{n_seeds} seeds give a paired comparison only {have:.0%} power to detect a {effect:g}-nat effect at "
        f"alpha {alpha:g}{family} (std of paired differences {std:g}); {needed} for {power:.0%} power"
    )


def detectable_effect(n: int, std: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER) -> float | None:
    """The smallest |effect| that `n` pairs detect with `power` at `alpha` (None for n < 2: no test exists).

    The inverse of `paired_power` in the effect (power rises monotonically with it), solved with scipy's
    Brent root finder between a negligible effect (power = alpha < target) and one doubled until it reaches
    the target. What `sweep report` quotes as "n seeds can only resolve differences of about X nats".
    """
    std, alpha, power = _positive(std, "std"), _fraction(alpha, "alpha"), _fraction(power, "power")
    if power <= alpha:
        raise ConfigError("power", f"must exceed alpha ({alpha:g}), got {power:g}")
    if n < 2:
        return None
    lo, hi = std * 1e-9, std
    while paired_power(n, hi, std, alpha) < power:
        lo, hi = hi, 2.0 * hi
    return float(_optimize.brentq(lambda e: paired_power(n, e, std, alpha) - power, lo, hi, xtol=std * 1e-9))


# ---------------------------------------------------------------------------------------------------------
# Measuring the std from finished groups.


def difference_std_from_group(values: Iterable[float]) -> float:
    """Std of paired differences implied by one group's per-seed values, assuming independent seeds.

    ``sqrt(2) * sample std``: an upper bound when seeds correlate across shapes (they usually do), so a
    plan built on it asks for at least enough seeds. Needs 2+ finite values.
    """
    xs = [float(v) for v in values]
    if len(xs) < 2 or not all(math.isfinite(x) for x in xs):
        raise ValueError(f"need at least two finite per-seed values, got {xs}")
    mean = math.fsum(xs) / len(xs)
    sample_std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return math.sqrt(2.0) * sample_std


def paired_std(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Sample std of the per-seed differences of two groups that ran the same seeds (e.g. two baselines).

    This is exactly the std the planner wants; the mean difference between the groups does not enter it.
    """
    comparison = paired_comparison(a, b, names=("a", "b"))
    if comparison.n < 2:
        raise ValueError("need at least two common seeds to measure a std")
    return comparison.std_diff


def pooled_std(samples: Iterable[Sequence[float]]) -> tuple[float, int] | None:
    """Pooled within-sample std and its degrees of freedom: ``sqrt(sum of squared deviations / sum(n_i - 1))``.

    Each sample (one group's per-seed values) contributes about its own mean, so differences *between*
    groups never inflate it. Samples with fewer than two values carry no spread and are skipped; None when
    nothing is left.
    """
    squares, df = [], 0
    for sample in samples:
        xs = [float(v) for v in sample if math.isfinite(float(v))]
        if len(xs) < 2:
            continue
        mean = math.fsum(xs) / len(xs)
        squares.extend((x - mean) ** 2 for x in xs)
        df += len(xs) - 1
    if df == 0:
        return None
    return math.sqrt(math.fsum(squares) / df), df


@dataclass(frozen=True)
class NoiseEstimate:
    """Seed noise of final val loss measured on finished groups (typically a sweep's baselines).

    `within_std`: pooled std of one group's final loss over seeds (`within_df` degrees of freedom).
    `paired_std`: pooled std of per-seed differences between two groups over their common seeds, over every
    pair in `pairs` (`paired_df` degrees of freedom); None with fewer than two groups sharing 2+ seeds.
    """

    groups: tuple[str, ...]
    within_std: float | None
    within_df: int
    pairs: tuple[tuple[str, str], ...]
    paired_std: float | None
    paired_df: int

    def planning_std(self) -> tuple[float, str] | None:
        """The std to plan with and where it came from: the paired std when measured (what the test sees),
        else the independent-seeds bound ``sqrt(2) x within_std``; None when neither is known."""
        if self.paired_std is not None and self.paired_std > 0.0:
            return self.paired_std, "std of paired differences between groups"
        if self.within_std is not None and self.within_std > 0.0:
            return math.sqrt(2.0) * self.within_std, "sqrt(2) x pooled within-group std (independent-seeds bound)"
        return None


def measure_noise(groups: Mapping[str, Mapping[str, float]]) -> NoiseEstimate:
    """`NoiseEstimate` from finished groups given as group name -> seed -> final value.

    Pairs use the seeds both groups ran (at least two). With three or more groups the pairs share groups and
    are not independent; the pooled std is still an unbiased average of their variances.
    """
    names = tuple(sorted(groups))
    finals = {g: {str(s): float(v) for s, v in groups[g].items() if math.isfinite(float(v))} for g in names}
    within = pooled_std(list(values.values()) for values in finals.values())
    pairs, diffs = [], []
    for a, b in combinations(names, 2):
        common = sorted(set(finals[a]) & set(finals[b]))
        if len(common) >= 2:
            pairs.append((a, b))
            diffs.append([finals[a][s] - finals[b][s] for s in common])
    paired = pooled_std(diffs)
    return NoiseEstimate(
        groups=names, within_std=within[0] if within else None, within_df=within[1] if within else 0,
        pairs=tuple(pairs), paired_std=paired[0] if paired else None, paired_df=paired[1] if paired else 0,
    )
