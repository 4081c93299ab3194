"""Paired comparison of two seed groups: is one schedule shape really better than a baseline?

Both groups ran the same seeds, and a seed fixes the initialisation and the data order, so seed-to-seed
variation is largely shared between the groups. Comparing *per-seed differences* (candidate minus
baseline, matched by seed) removes that shared part; comparing the two groups' means would not, and would
need many more seeds to see effects of a few thousandths of a nat.

Per comparison we report the mean difference with its 95 % t-interval, the paired t-test p-value and, when
there are enough pairs for it to mean anything, the exact Wilcoxon signed-rank p-value. The verdict is
called at ``alpha`` (0.01 by default) from the paired t-test alone, and only the sign of a *significant*
mean difference decides "better" / "worse"; everything else is "no detectable difference" (which is not
"no difference": it may just need more seeds, see `sweep.seed_planner`).

Wilcoxon: the smallest two-sided p-value an exact signed-rank test can produce with n nonzero pairs is
``2 / 2^n`` (every difference has the same sign). That is below 0.01 only from n = 8 on (2/256 = 0.0078;
n = 7 gives 0.0156), so with fewer pairs it could never reject at alpha 0.01 and is not reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from scipy import stats as _stats

from sweep.stats import seed_stats

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"
DEFAULT_ALPHA = 0.01
# The smallest n at which an exact two-sided Wilcoxon signed-rank test can reach p < 0.01 (see above).
WILCOXON_MIN_N = 8


class UnmatchedSeedsError(ValueError):
    """The two groups did not run the same seeds: a paired comparison would be meaningless."""


def min_wilcoxon_n(alpha: float = DEFAULT_ALPHA) -> int:
    """Smallest n whose exact two-sided signed-rank test can give p < `alpha` (2 / 2^n < alpha)."""
    n = 1
    while 2.0 / 2.0**n >= alpha:
        n += 1
    return n


@dataclass(frozen=True)
class PairedComparison:
    """`candidate` minus `baseline` over their common seeds (a negative `mean_diff` is a lower loss).

    `t_pvalue` is NaN with a single pair; `wilcoxon_pvalue` is None below `min_wilcoxon_n(alpha)` pairs.
    `ci_low`/`ci_high` bound the mean difference at `confidence` (Student t, n - 1 degrees of freedom).
    """

    candidate: str
    baseline: str
    seeds: tuple[str, ...]
    diffs: tuple[float, ...]
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    t_pvalue: float
    wilcoxon_pvalue: float | None
    alpha: float
    lower_is_better: bool
    verdict: str

    @property
    def n(self) -> int:
        return len(self.diffs)

    def summary(self) -> str:
        """One line: ``wsd vs cosine: -0.0042 [-0.0061, -0.0023] nats, p=0.0004 (t), n=5 -> better``."""
        wil = "" if self.wilcoxon_pvalue is None else f", p={self.wilcoxon_pvalue:.4g} (Wilcoxon)"
        ci = "n/a" if math.isnan(self.ci_low) else f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
        return (
            f"{self.candidate} vs {self.baseline}: {self.mean_diff:+.4f} {ci}, p={self.t_pvalue:.4g} (t)"
            f"{wil}, n={self.n} -> {self.verdict}"
        )


def _matched(candidate: Mapping[str, float], baseline: Mapping[str, float], names: tuple[str, str]) -> list[str]:
    a, b = {str(k) for k in candidate}, {str(k) for k in baseline}
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        parts = []
        if only_a:
            parts.append(f"seeds {', '.join(only_a)} only in {names[0]}")
        if only_b:
            parts.append(f"seeds {', '.join(only_b)} only in {names[1]}")
        raise UnmatchedSeedsError(
            f"cannot pair {names[0]} with {names[1]}: {'; '.join(parts)} (a paired comparison needs the same seeds)"
        )
    if not a:
        raise UnmatchedSeedsError(f"cannot pair {names[0]} with {names[1]}: no seeds")
    return sorted(a, key=lambda s: (len(s), s))  # numeric seeds as strings sort naturally


def paired_comparison(
    candidate: Mapping[str, float] | Mapping[int, float],
    baseline: Mapping[str, float] | Mapping[int, float],
    *,
    names: tuple[str, str] = ("candidate", "baseline"),
    alpha: float = DEFAULT_ALPHA,
    confidence: float = 0.95,
    lower_is_better: bool = True,
) -> PairedComparison:
    """Compare per-seed final values (seed -> value) of two groups, matched by seed.

    Raises `UnmatchedSeedsError` when the seed sets differ, ValueError on a non-finite value (a diverged
    seed has no loss to compare; decide about divergence before calling this).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    cand = {str(k): float(v) for k, v in candidate.items()}
    base = {str(k): float(v) for k, v in baseline.items()}
    seeds = _matched(cand, base, names)
    for group, values in zip(names, (cand, base)):
        bad = [s for s in seeds if not math.isfinite(values[s])]
        if bad:
            raise ValueError(f"{group} has non-finite values for seeds {', '.join(bad)}")
    diffs = [cand[s] - base[s] for s in seeds]
    summary = seed_stats(diffs, confidence)  # float64 sums; NaN std/CI for a single pair
    t_p = _paired_t_pvalue(diffs, summary.mean, summary.std)
    wil_p = _wilcoxon_pvalue(diffs) if len(diffs) >= min_wilcoxon_n(alpha) else None
    verdict = NO_DIFFERENCE
    if t_p < alpha and summary.mean != 0.0:
        improved = summary.mean < 0.0 if lower_is_better else summary.mean > 0.0
        verdict = BETTER if improved else WORSE
    return PairedComparison(
        candidate=names[0], baseline=names[1], seeds=tuple(seeds), diffs=tuple(diffs), mean_diff=summary.mean,
        std_diff=summary.std, ci_low=summary.ci_low, ci_high=summary.ci_high, confidence=confidence,
        t_pvalue=t_p, wilcoxon_pvalue=wil_p, alpha=alpha, lower_is_better=lower_is_better, verdict=verdict,
    )


def _paired_t_pvalue(diffs: list[float], mean: float, std: float) -> float:
    """Two-sided one-sample t-test of the differences against 0 (= the paired t-test)."""
    n = len(diffs)
    if n < 2:
        return math.nan
    if std == 0.0:
        # Every seed moved by exactly the same amount: no noise at all (a noiseless simulator). scipy would
        # return NaN; the honest answer is "certainly different" unless the difference itself is zero.
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (std / math.sqrt(n))
    return float(2.0 * _stats.t.sf(abs(t), df=n - 1))


def _wilcoxon_pvalue(diffs: list[float]) -> float:
    """Two-sided signed-rank p-value; exact when scipy can (no zero and no tied |differences|)."""
    if all(d == 0.0 for d in diffs):
        return 1.0
    return float(_stats.wilcoxon(diffs, alternative="two-sided", method="auto").pvalue)


def compare_to_baselines(
    groups: Mapping[str, Mapping[str, float]],
    baselines: Iterable[str],
    **kwargs,
) -> list[PairedComparison]:
    """Every non-baseline group against every baseline (group name -> seed -> final value).

    Keyword arguments go to `paired_comparison` (alpha, confidence, lower_is_better).
    """
    baselines = list(baselines)
    missing = [b for b in baselines if b not in groups]
    if missing:
        raise ValueError(f"baseline groups not found: {', '.join(missing)}")
    out = []
    for name, values in groups.items():
        if name in baselines:
            continue
        for base in baselines:
            out.append(paired_comparison(values, groups[base], names=(name, base), **kwargs))
    return out
