"""Paired comparison of seed groups, and verdicts that stay honest over a whole family of comparisons.

Both groups of a pair ran the same seeds, and a seed fixes the initialisation and the data order, so
seed-to-seed variation is largely shared between them. Comparing *per-seed differences* (candidate minus
baseline, matched by seed) removes that shared part; comparing the two groups' means would not, and would
need many more seeds to see effects of a few thousandths of a nat.

One pair (`paired_comparison`): the mean difference, the paired t-test p-value and, when there are enough
pairs for it to mean anything, the exact Wilcoxon signed-rank p-value. Some inputs admit no test at all and
get `NO_VERDICT` with the reason in words (`PairedComparison.reason`):

- fewer than `MIN_PAIRS` (3) seeds: with two pairs the t-test rests on one degree of freedom, and a metric
  printed with a few decimals gives false calls far above alpha;
- every seed moved by exactly the same amount (std 0): there is no noise to test against, which in practice
  means a trainer that ignores its seed, not a certain difference;
- a std of the differences below the metric's resolution (a script that prints 3 decimals): the spread seen
  is rounding, not seed noise.

A report makes many comparisons (every shape against every baseline), so a per-comparison alpha would print
false "better"s by the dozen when no shape differs. `family_verdicts` calls every verdict of one report on
p-values adjusted over the whole family (statsmodels' `multipletests`: Holm by default, Bonferroni,
Benjamini-Hochberg, or none on request), and gives each comparison the confidence interval whose level
matches its test, so an interval that excludes 0 always sits next to a called verdict and vice versa:

- bonferroni: level 1 - alpha/m for every comparison;
- holm: the i-th smallest p is tested at alpha/(m - i + 1) while the step-down goes on; the comparisons it
  rejects get that level, the rest the level at which it stopped;
- fdr_bh: with R rejections, level 1 - R alpha/m (the false-coverage-rate intervals of Benjamini and
  Yekutieli 2005), 1 - alpha/m when nothing is rejected;
- none: level 1 - alpha.

Wilcoxon: the smallest two-sided p-value an exact signed-rank test can produce with n nonzero pairs is
``2 / 2^n`` (every difference has the same sign). It is reported (never used for the verdict) from the n at
which it could reach alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as _stats

from search_spaces.validation import check_choice
from sweep.stats.seeds import seed_stats

BETTER, WORSE, NO_DIFFERENCE, NO_VERDICT = "better", "worse", "no detectable difference", "no verdict"
CALLED = (BETTER, WORSE)
DEFAULT_ALPHA = 0.01
MIN_PAIRS = 3
# statsmodels' names for the family-wise corrections (`verdict.correction`), and what each controls.
CORRECTIONS = {
    "holm": "Holm step-down (family-wise error rate)",
    "bonferroni": "Bonferroni (family-wise error rate)",
    "fdr_bh": "Benjamini-Hochberg (false discovery rate)",
    "none": "no correction (per-comparison error rate only)",
}
DEFAULT_CORRECTION = "holm"
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

    `t_pvalue` is the raw paired t-test p-value (NaN when no test is possible: then `reason` says why and
    the verdict is `NO_VERDICT`). `adjusted_pvalue` is the p-value the verdict was called on: the raw one
    for a comparison on its own, the family-adjusted one after `family_verdicts`. `ci_low`/`ci_high` bound
    the mean difference at `confidence` (Student t, n - 1 degrees of freedom), the level that matches the
    test (`1 - alpha` alone, the corrected level in a family). `family_size` and `correction` name the
    family the verdict belongs to (1 and "none" for a comparison on its own).
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
    reason: str = ""
    adjusted_pvalue: float = math.nan
    family_size: int = 1
    correction: str = "none"

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def testable(self) -> bool:
        """A test was possible (a finite raw p-value, no reason to withhold the verdict)."""
        return not self.reason and math.isfinite(self.t_pvalue)

    def summary(self) -> str:
        """One line: ``wsd vs cosine: -0.0042 [-0.0061, -0.0023] nats, p=0.0004 (t), n=5 -> better``."""
        wil = "" if self.wilcoxon_pvalue is None else f", p={self.wilcoxon_pvalue:.4g} (Wilcoxon)"
        ci = "n/a" if math.isnan(self.ci_low) else f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
        adj = (f", adjusted p={self.adjusted_pvalue:.4g} ({self.correction}, {self.family_size} comparisons)"
               if self.family_size > 1 and self.testable else "")
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"{self.candidate} vs {self.baseline}: {self.mean_diff:+.4f} {ci}, p={self.t_pvalue:.4g} (t)"
            f"{adj}{wil}, n={self.n} -> {self.verdict}{why}"
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


def _direction(mean: float, lower_is_better: bool) -> str:
    improved = mean < 0.0 if lower_is_better else mean > 0.0
    return BETTER if improved else WORSE


def untestable_reason(n: int, std: float, resolution: float | None = None) -> str:
    """Why a paired test of `n` differences with sample std `std` would mean nothing, or "" when it would."""
    if n < MIN_PAIRS:
        return f"{n} seed{'s' if n != 1 else ''}: a paired test needs at least {MIN_PAIRS}"
    if std == 0.0:
        return ("every seed moved by exactly the same amount (std 0): no seed noise to test against; "
                "does the trainer ignore its seed?")
    if resolution is not None and std < resolution:
        return f"the differences' std {std:.2g} is below the metric's resolution {resolution:g}: rounding, not noise"
    return ""


def paired_comparison(
    candidate: Mapping[str, float] | Mapping[int, float],
    baseline: Mapping[str, float] | Mapping[int, float],
    *,
    names: tuple[str, str] = ("candidate", "baseline"),
    alpha: float = DEFAULT_ALPHA,
    confidence: float | None = None,
    lower_is_better: bool = True,
    resolution: float | None = None,
) -> PairedComparison:
    """Compare per-seed final values (seed -> value) of two groups, matched by seed, as a family of one.

    `confidence` defaults to 1 - alpha (the interval that matches the test). `resolution`: the smallest
    step the metric can take (None: continuous). Raises `UnmatchedSeedsError` when the seed sets differ,
    ValueError on a non-finite value (a diverged seed has no loss to compare; decide about divergence
    before calling this).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    confidence = 1.0 - alpha if confidence is None else confidence
    cand = {str(k): float(v) for k, v in candidate.items()}
    base = {str(k): float(v) for k, v in baseline.items()}
    seeds = _matched(cand, base, names)
    for group, values in zip(names, (cand, base)):
        bad = [s for s in seeds if not math.isfinite(values[s])]
        if bad:
            raise ValueError(f"{group} has non-finite values for seeds {', '.join(bad)}")
    diffs = [cand[s] - base[s] for s in seeds]
    summary = seed_stats(diffs, confidence)  # float64 sums; NaN std/CI for a single pair
    reason = untestable_reason(len(diffs), summary.std, resolution)
    t_p = math.nan if reason else _paired_t_pvalue(diffs, summary.mean, summary.std)
    wil_p = _wilcoxon_pvalue(diffs) if not reason and len(diffs) >= min_wilcoxon_n(alpha) else None
    if reason:
        verdict = NO_VERDICT
    else:
        verdict = _direction(summary.mean, lower_is_better) if t_p < alpha else NO_DIFFERENCE
    return PairedComparison(
        candidate=names[0], baseline=names[1], seeds=tuple(seeds), diffs=tuple(diffs), mean_diff=summary.mean,
        std_diff=summary.std, ci_low=summary.ci_low, ci_high=summary.ci_high, confidence=confidence,
        t_pvalue=t_p, wilcoxon_pvalue=wil_p, alpha=alpha, lower_is_better=lower_is_better, verdict=verdict,
        reason=reason, adjusted_pvalue=t_p,
    )


def without_verdict(c: PairedComparison, reason: str) -> PairedComparison:
    """`c` with its verdict withheld for `reason` (it then stays out of any family correction)."""
    return replace(c, verdict=NO_VERDICT, reason=reason, adjusted_pvalue=math.nan)


def _paired_t_pvalue(diffs: list[float], mean: float, std: float) -> float:
    """Two-sided one-sample t-test of the differences against 0 (= the paired t-test); std > 0, n >= 2."""
    n = len(diffs)
    t = mean / (std / math.sqrt(n))
    return float(2.0 * _stats.t.sf(abs(t), df=n - 1))


def _wilcoxon_pvalue(diffs: list[float]) -> float:
    """Two-sided signed-rank p-value; exact when scipy can (no zero and no tied |differences|)."""
    if all(d == 0.0 for d in diffs):
        return 1.0
    return float(_stats.wilcoxon(diffs, alternative="two-sided", method="auto").pvalue)


# ---- a family of comparisons ----------------------------------------------------------------------------
def check_correction(name: str, field: str = "verdict.correction") -> str:
    """`name` if it is one of CORRECTIONS, else a ConfigError naming `field`."""
    return check_choice(name, field, CORRECTIONS)


def _levels(raw: np.ndarray, reject: np.ndarray, alpha: float, correction: str) -> np.ndarray:
    """Per-comparison test level alpha_i with: the verdict is called <=> raw p <= alpha_i (module docstring).

    The confidence interval at 1 - alpha_i then excludes 0 exactly when the verdict is called.
    """
    m = len(raw)
    if correction == "none":
        return np.full(m, alpha)
    if correction == "bonferroni":
        return np.full(m, alpha / m)
    if correction == "fdr_bh":
        r = int(reject.sum())
        return np.full(m, alpha * max(r, 1) / m)
    # holm: walk the p-values in ascending order; ranks are 0-based, so the i-th is tested at alpha/(m - i).
    order = np.argsort(raw, kind="stable")
    levels = np.empty(m)
    stop = next((i for i, j in enumerate(order) if not reject[j]), m)
    for i, j in enumerate(order):
        levels[j] = alpha / (m - min(i, stop))
    return levels


def family_verdicts(comparisons: Sequence[PairedComparison], alpha: float = DEFAULT_ALPHA,
                    correction: str = DEFAULT_CORRECTION) -> list[PairedComparison]:
    """Every verdict of `comparisons` called on p-values adjusted over the whole family (same order back).

    The family is the testable comparisons (those with a raw p-value); the rest keep their NO_VERDICT and
    reason. Each testable comparison gets its adjusted p, the verdict called on it, and the interval at the
    level that matches its test. The adjustment itself is statsmodels' `multipletests`.
    """
    from statsmodels.stats.multitest import multipletests

    check_correction(correction, "correction")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    idx = [i for i, c in enumerate(comparisons) if c.testable]
    out = list(comparisons)
    m = len(idx)
    if m == 0:
        return out
    raw = np.array([comparisons[i].t_pvalue for i in idx], dtype=np.float64)
    if correction == "none":
        reject, adjusted = raw <= alpha, raw
    else:
        reject, adjusted, _, _ = multipletests(raw, alpha=alpha, method=correction)
    levels = _levels(raw, reject, alpha, correction)
    # The intervals at each comparison's own level, in one vectorised t quantile call (a family can hold
    # thousands of comparisons): mean +- t_{1 - level/2, n - 1} x std / sqrt(n), as `seed_stats` computes it.
    ns = np.array([comparisons[i].n for i in idx], dtype=np.float64)
    half = _stats.t.ppf(1.0 - levels / 2.0, ns - 1.0) * np.array([comparisons[i].std_diff for i in idx]) / np.sqrt(ns)
    for k, i in enumerate(idx):
        c = comparisons[i]
        verdict = _direction(c.mean_diff, c.lower_is_better) if reject[k] and c.mean_diff != 0.0 else NO_DIFFERENCE
        out[i] = replace(c, adjusted_pvalue=float(adjusted[k]), verdict=verdict, alpha=alpha,
                         ci_low=c.mean_diff - float(half[k]), ci_high=c.mean_diff + float(half[k]),
                         confidence=1.0 - float(levels[k]), family_size=m, correction=correction)
    in_family = set(idx)
    for i, c in enumerate(out):
        if i not in in_family:
            out[i] = replace(c, alpha=alpha, family_size=m, correction=correction)
    return out


def compare_to_baselines(
    groups: Mapping[str, Mapping[str, float]],
    baselines: Iterable[str],
    *,
    alpha: float = DEFAULT_ALPHA,
    correction: str = DEFAULT_CORRECTION,
    **kwargs,
) -> list[PairedComparison]:
    """Every non-baseline group against every baseline (group name -> seed -> final value), as one family.

    Keyword arguments go to `paired_comparison` (lower_is_better, resolution).
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
            out.append(paired_comparison(values, groups[base], names=(name, base), alpha=alpha, **kwargs))
    return family_verdicts(out, alpha, correction)
