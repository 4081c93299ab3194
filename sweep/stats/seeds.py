"""Statistics over a seed group: mean, sample std and a t-distribution confidence interval.

A group runs one schedule shape over a handful of seeds (typically 3-5), so the normal approximation
would overstate our certainty: the interval uses Student's t with n - 1 degrees of freedom. Sums are
float64 (`math.fsum`), because differences between shapes are often a few thousandths of a nat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over the seeds of a group.

    `std` is the sample standard deviation (ddof=1). With a single seed, `std` and the interval are
    NaN: one value says nothing about spread, and we would rather show "n/a" than a fake zero.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval (the "±" part)."""
        return (self.ci_high - self.ci_low) / 2.0

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Flat MLflow-style metrics, e.g. ``val_loss_mean``, ``val_loss_std``, ``val_loss_ci95_low``.

        NaN entries are left out: MLflow stores them, but they break sorting in its compare view.
        """
        tag = f"ci{round(self.confidence * 100):d}"
        values = {
            f"{prefix}_mean": self.mean,
            f"{prefix}_std": self.std,
            f"{prefix}_{tag}_low": self.ci_low,
            f"{prefix}_{tag}_high": self.ci_high,
            f"{prefix}_{tag}_half_width": self.half_width,
            f"{prefix}_n": float(self.n),
        }
        return {k: v for k, v in values.items() if not math.isnan(v)}


def is_finite_number(value: object) -> bool:
    """A real, finite number (a bool is not one): what may be averaged as a loss or read as a flag."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def seed_stats(values: Iterable[float], confidence: float = 0.95) -> SeedStats:
    """Mean, sample std and the two-sided `confidence` t-interval of `values` (one per seed).

    Raises ValueError on an empty input, a non-finite value or a confidence outside (0, 1): each of
    those would silently produce a meaningless summary.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("seed_stats needs at least one value")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"seed_stats got a non-finite value: {xs}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        nan = float("nan")
        return SeedStats(n=1, mean=mean, std=nan, ci_low=nan, ci_high=nan, confidence=confidence)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    t_crit = float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
    half = t_crit * std / math.sqrt(n)
    return SeedStats(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half, confidence=confidence)
