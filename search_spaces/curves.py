"""Interpolation curves: how a segment moves from its start level to its end level.

A curve is a non-decreasing map ``g: [0, 1] -> [0, 1]`` with ``g(0) = 0`` and ``g(1) = 1``; a segment from
level ``a`` to level ``b`` takes ``a + (b - a) * g(u)`` at fraction ``u`` of its duration.  The same ``g``
serves rising (warmup) and falling (decay) segments:

==============  ==================================  ===================================================
name            g(u)                                as a decay from 1 to f
==============  ==================================  ===================================================
``linear``      u                                   linear decay
``cosine``      (1 - cos(pi u)) / 2                 half-cosine annealing
``sqrt``        sqrt(u)                             "1-sqrt" cooldown, f + (1-f)(1 - sqrt(u)) (Hägele
                                                    et al. 2024); as a warmup: concave, fast rise
``polynomial``  1 - (1 - u)^p                       f + (1-f)(1-u)^p; p = ``exponent`` (> 0)
``exponential`` (1 - e^(-k u)) / (1 - e^(-k)),      exponential decay renormalised to end exactly at f;
                k = EXP_RATE = 5                    as a warmup: 1 - e^(-k u) saturation (the RAdam
                                                    paper's "exponential warmup")
==============  ==================================  ===================================================
"""

from __future__ import annotations

import numpy as np

CURVES: tuple[str, ...] = ("linear", "cosine", "sqrt", "polynomial", "exponential")
"""Every curve name, in documentation order."""

EXP_RATE = 5.0
"""Rate k of the ``exponential`` curve: e-folds over the segment (a decay ends at e^-5 < 1 % before
renormalisation), fixed so that the curve name alone is the whole description."""

# Computed once so that g(1) is the same float ratio x / x == 1.0 exactly.
_EXP_NORM = 1.0 - np.exp(-EXP_RATE)


def curve_fraction(name: str, u: np.ndarray, exponent: float | None = None) -> np.ndarray:
    """``g(u)`` for curve `name` on an array of ``u`` in [0, 1] (float64).

    `exponent` is the polynomial's p and is required for ``polynomial`` only.  Callers validate names;
    an unknown one here is a programming error.
    """
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if name == "linear":
        return u
    if name == "cosine":
        return 0.5 * (1.0 - np.cos(np.pi * u))
    if name == "sqrt":
        return np.sqrt(u)
    if name == "polynomial":
        if exponent is None:
            raise ValueError("polynomial curve needs an exponent")
        return 1.0 - np.power(1.0 - u, exponent)
    if name == "exponential":
        return (1.0 - np.exp(-EXP_RATE * u)) / _EXP_NORM
    raise ValueError(f"unknown curve {name!r}")
