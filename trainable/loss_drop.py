"""The loss-drop term LD(t) of the Multi-Power Law (see `trainable.loss_law`), by two exact routes.

    LD(t) = B * sum_{k=1..t} d_k * G(eta_k^(-gamma) * S_k(t)),   d_k = eta_{k-1} - eta_k,
    G(x) = 1 - (C x + 1)^(-beta),   S_k(t) = sum_{tau=k..t} eta_tau

`drop_by_pairs` sums the definition over (t, earlier LR change) pairs: O(len(t) x changes), the cheap route
for a few eval points. `drop_by_scan` computes the same sum for every step in O(T x ~100 quadrature
nodes) through a Laplace representation of G and running sums: the route for whole curves of schedules
that change the LR at every step (cosine: O(T^2 / 2) pairs otherwise). They agree to ~1e-12 nats;
`loss_drop` picks the cheaper one. Indices are 0-based post-warmup steps (index j is the paper's t = j + 1).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from scipy.special import gamma as gamma_fn

# Pairs (eval step x LR change) per block of the direct sum: a few 8 MB temporaries, cache friendly.
_BLOCK_PAIRS = 1_000_000
# A zero LR would make eta^(-gamma) infinite; flooring it keeps G well defined (G -> 1 when steps follow,
# G = 0 when nothing follows, which is the right limit: a decay only pays off through later steps).
ETA_FLOOR = 1e-30
# Route choice (pair-equivalents one scan step costs) and quadrature step of the scan.
_SCAN_PAIRS_PER_STEP = 100
_SCAN_H = 0.4


class DropParams(Protocol):
    """The law parameters LD needs (a `MultiPowerLaw` is one)."""

    B: float
    C: float
    beta: float
    gamma: float


def loss_drop(law: DropParams, post: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """LD at post-warmup indices `t_idx` (0-based: index j is the paper's t = j + 1)."""
    # d[j] = eta_{j-1} - eta_j in 0-based post-warmup indices, with eta_{-1} := eta_0 (the peak).
    d = np.empty_like(post)
    d[0] = 0.0
    d[1:] = post[:-1] - post[1:]
    k = np.flatnonzero(d)  # only LR changes contribute; constant stretches cost nothing
    if len(k) == 0:
        return np.zeros(len(t_idx), dtype=np.float64)
    # Pick the cheaper exact route: the direct pair sum costs one pow per (t, earlier change); the scan
    # costs one exp per quadrature node and step plus a Python-level step (~100 pair-equivalents, measured).
    pairs = int(np.searchsorted(k, t_idx, side="right").sum())
    if pairs > _SCAN_PAIRS_PER_STEP * (int(t_idx.max()) + 1):
        return drop_by_scan(law, post, d, k, t_idx)
    return drop_by_pairs(law, post, d, k, t_idx)


def drop_by_pairs(law: DropParams, post: np.ndarray, d: np.ndarray, k: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """The definition, summed over (t, change) pairs in blocks: O(len(t_idx) x changes)."""
    out = np.zeros(len(t_idx), dtype=np.float64)
    P = np.cumsum(post)
    # S_k(t) = P[t] - P[k] + eta_k  (sum of eta over k..t inclusive, 0-based)
    start_k = P[k] - post[k]
    eta_scale = np.maximum(post[k], ETA_FLOOR) ** (-law.gamma) * law.C
    dk = d[k]
    order = np.argsort(t_idx, kind="stable")
    ts = t_idx[order]
    rows = max(1, _BLOCK_PAIRS // len(k))
    for lo in range(0, len(ts), rows):
        tb = ts[lo:lo + rows]
        # Changes after the largest t of this block never count: cut the columns (triangular saving).
        ncols = int(np.searchsorted(k, tb[-1], side="right"))
        if ncols == 0:
            continue
        S = P[tb][:, None] - start_k[None, :ncols]
        x = S * eta_scale[None, :ncols]
        g = 1.0 - np.exp(-law.beta * np.log1p(np.maximum(x, 0.0)))
        g[k[None, :ncols] > tb[:, None]] = 0.0  # change k after t: not yet happened
        out[order[lo:lo + rows]] = law.B * (g @ dk[:ncols])
    return out


def drop_by_scan(law: DropParams, post: np.ndarray, d: np.ndarray, k: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """The same sum in O(T x nodes) through a Laplace representation and a running sum.

    With c_k = C eta_k^(-gamma) and a = 1/c_k + S_k(t):  (1 + c_k S_k(t))^(-beta) = c_k^(-beta) a^(-beta)
    and a^(-beta) = 1/Gamma(beta) * integral_0^inf r^(beta-1) e^(-r a) dr. Since
    e^(-r S_k(t)) = e^(-r eta_k) * prod_{tau=k+1..t} e^(-r eta_tau), the sum over k becomes, per
    quadrature node r, a running sum H(t) = H(t-1) e^(-r eta_t) + [term of change t]: one pass over
    the steps. The integral is a trapezoid rule in x = log r (error ~ exp(-pi^2 / h): ~1e-11 relative
    at h = 0.4), over x where the integrand matters for the smallest and largest `a`; the nodes further
    left sum in closed form (that infinite tail is what keeps small beta accurate).
    """
    from scipy.special import gamma as gamma_fn

    beta = law.beta
    c = law.C * np.maximum(post[k], ETA_FLOOR) ** (-law.gamma)
    a_min = float(np.min(1.0 / c + post[k]))
    a_max = float(np.max(1.0 / c)) + float(np.sum(post))
    x_lo = math.log(1e-8 / a_max)  # below: e^(-a r) = 1 - O(1e-8), the tail integrates in closed form
    x_hi = math.log(40.0 / max(a_min, 1e-300))  # above: e^(-a r) < e^(-40) for every term
    xs = np.arange(x_lo, x_hi + _SCAN_H, _SCAN_H)
    r = np.exp(xs)
    weights = _SCAN_H * np.exp(beta * xs) / gamma_fn(beta)  # r^beta dx (r^(beta-1) dr = r^beta dx)
    # The trapezoid rule is spectrally accurate only over the whole line, so keep its nodes below x_lo
    # too: there the integrand is e^(beta x) (1 - O(1e-8)), and those nodes sum as a geometric series.
    tail = _SCAN_H * math.exp(beta * x_lo) * math.exp(-beta * _SCAN_H) / -math.expm1(-beta * _SCAN_H) / gamma_fn(beta)
    coef = d[k] * c ** (-beta)  # d_k c_k^(-beta)
    row_of_change = np.full(len(post), -1)
    row_of_change[k] = np.arange(len(k))
    wanted = np.zeros(len(post), dtype=bool)
    wanted[t_idx] = True
    last = int(t_idx.max())
    F = np.zeros(len(post))
    H = np.zeros(len(r))
    chunk = max(1, _BLOCK_PAIRS // (4 * len(r)))  # bounded memory for the per-step factors
    for lo in range(0, last + 1, chunk):
        hi = min(lo + chunk, last + 1)
        decay = np.exp(-np.outer(post[lo:hi], r))
        ks = k[(k >= lo) & (k < hi)]
        adds = coef[row_of_change[ks], None] * np.exp(-np.outer(1.0 / c[row_of_change[ks]] + post[ks], r))
        add_row = dict(zip(ks.tolist(), range(len(ks))))
        for t in range(lo, hi):
            H *= decay[t - lo]
            i = add_row.get(t)
            if i is not None:
                H += adds[i]
            if wanted[t]:
                F[t] = float(H @ weights)
    # Sum of d_k c_k^(-beta) over changes so far, for the closed-form tail of every term.
    tail_coef = np.zeros(len(post))
    tail_coef[k] = coef
    tail_sum = np.cumsum(tail_coef)
    d_sum = np.cumsum(d)
    return law.B * (d_sum[t_idx] - (F[t_idx] + tail * tail_sum[t_idx]))
