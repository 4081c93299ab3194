"""Short words for schedule parts, shared by every schedule's `describe()`: the labels users read in the
console, the leaderboard, report tables, plot legends and MLflow run names, so they must stay compact
(one line, ~40 characters for a typical shape) and exact enough to tell two shapes of a sweep apart."""

from __future__ import annotations

# Decay curves read as the cooldown names people use; `sqrt` as a decay is the "1-sqrt" cooldown.
_DECAY_WORDS = {"linear": "lin", "cosine": "cos", "sqrt": "1-sqrt", "polynomial": "poly", "exponential": "exp"}
_RISE_WORDS = {"linear": "lin", "cosine": "cos", "sqrt": "sqrt", "polynomial": "poly", "exponential": "exp"}


def percent(fraction: float) -> str:
    """A fraction of the horizon as a percentage: ``0.72 -> 72%``, ``0.025 -> 2.5%``, ``0.0004 -> 0.04%``.

    Two significant digits below 10 %, so a short warmup is not printed as 0 %."""
    value = 100.0 * fraction
    if value == 0 or value >= 10:
        return f"{value:.0f}%"
    return f"{value:.2g}%"


def level(multiplier: float) -> str:
    """An LR multiplier with up to 3 significant digits: ``0.05``, ``0.383``, ``1``."""
    return f"{multiplier:.3g}"


def curve_word(curve: str, exponent: float | None = None, rising: bool = False) -> str:
    """``cos``, ``1-sqrt`` (a sqrt decay), ``poly^2``; rising curves keep ``sqrt`` as is."""
    word = (_RISE_WORDS if rising else _DECAY_WORDS).get(curve, curve)
    return f"{word}^{exponent:.3g}" if curve == "polynomial" and exponent is not None else word
