"""Named schedules: published formulas reproduced step for step, and common shapes by name.

YAML form: ``schedule: {preset: NAME, ...args}``, e.g. ``{preset: wsd_sqrt, cooldown_frac: 0.2}``.

Presets copied from a source formula keep that formula's own step convention and its integer
truncations; the multiplier is the source's ``lr(step) / learning_rate``.  Arguments that the source
counts in absolute iterations default to fractions of the run's horizon T (or to T itself), so every
preset also works for any run length.  The rest are `Shape`s with names (see `search_spaces.shapes` for
their step convention).  Names are stable: configs and other layers refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from search_spaces import validation
from search_spaces.base import VectorSchedule
from search_spaces.errors import ConfigError
from search_spaces.shapes import Shape

Args = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One preset argument: its type, default (None = derived from T), allowed range and meaning."""

    name: str
    kind: type  # int or float
    default: int | float | None
    doc: str
    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False

    def check(self, value: Any) -> int | float:
        if self.kind is int:
            return validation.check_int(value, self.name, None if self.lo is None else int(self.lo))
        return validation.check_number(value, self.name, lo=self.lo, hi=self.hi, hi_open=self.hi_open)


@dataclass(frozen=True)
class PresetSpec:
    """A preset's definition: its formula ``(steps, T, args) -> multipliers`` and its documentation."""

    name: str
    description: str
    params: tuple[Param, ...]
    formula: Callable[[np.ndarray, int, Args], np.ndarray]
    source: str = ""
    check: Callable[[Args], None] | None = None  # cross-argument checks that do not need T

    def resolve(self, given: Args) -> Args:
        """Every argument: the given ones validated, defaults for the rest."""
        known = {p.name: p for p in self.params}
        for key in given:
            if key not in known:
                accepted = ", ".join(known) or "none"
                raise ConfigError(key, f"unknown argument for preset {self.name!r}; accepted: {accepted}")
        resolved = {p.name: (p.check(given[p.name]) if given.get(p.name) is not None else p.default)
                    for p in self.params}
        if self.check is not None:
            self.check(resolved)
        return resolved


@dataclass(frozen=True)
class PresetSchedule(VectorSchedule):
    """A preset with its explicitly given arguments (defaults stay implicit, so they track T)."""

    name: str
    args: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        spec = _spec(self.name)
        given = dict(self.args)
        # Validate now, not at the first training step; checks that need T run at evaluation.
        resolved = spec.resolve(given)
        # Keep only explicitly given, non-None arguments, in a canonical order, so equal presets compare equal.
        clean = tuple((p.name, resolved[p.name]) for p in spec.params if given.get(p.name) is not None)
        object.__setattr__(self, "args", clean)

    @property
    def spec(self) -> PresetSpec:
        return _spec(self.name)

    def _evaluate(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        values = self.spec.formula(steps, total_steps, self.spec.resolve(dict(self.args)))
        return np.asarray(values, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.name, **dict(self.args)}

    def flat_params(self) -> dict[str, float | int | str]:
        # Resolved values (defaults included) say more in MLflow; T-derived defaults stay out (None).
        resolved = self.spec.resolve(dict(self.args))
        return {"kind": "preset", "preset": self.name, **{k: v for k, v in resolved.items() if v is not None}}

    def describe(self) -> str:
        # A preset's name is its description; arguments away from their defaults follow. (A preset read
        # back from MLflow params carries every default explicitly: those must not lengthen its name.)
        defaults = {p.name: p.default for p in self.spec.params}
        changed = [(k, v) for k, v in self.args if v != defaults.get(k)]
        if not changed:
            return self.name
        return f"{self.name} (" + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in changed) + ")"


# -- source formulas ------------------------------------------------------------------------------------


def _nanogpt_cosine(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
    """nanoGPT's get_lr with learning_rate = 1 and min_lr = min_lr_ratio:
    ``it < W: (it+1)/(W+1)``; ``it > D: min_lr``; else ``min_lr + 0.5 (1 + cos(pi (it-W)/(D-W))) (1 - min_lr)``.
    """
    warmup = a["warmup_iters"] if a["warmup_iters"] is not None else int(a["warmup_frac"] * total)
    decay = a["lr_decay_iters"] if a["lr_decay_iters"] is not None else total
    if warmup >= decay:
        raise ConfigError("warmup_iters", f"must be < lr_decay_iters ({decay}), got {warmup}")
    it = steps.astype(np.float64)
    min_lr = a["min_lr_ratio"]
    ratio = (it - warmup) / (decay - warmup)
    cosine = min_lr + 0.5 * (1.0 + np.cos(np.pi * ratio)) * (1.0 - min_lr)
    return np.where(it < warmup, (it + 1) / (warmup + 1), np.where(it > decay, min_lr, cosine))


def _check_nanogpt(a: Args) -> None:
    if a["warmup_iters"] is not None and a["lr_decay_iters"] is not None and a["warmup_iters"] >= a["lr_decay_iters"]:
        raise ConfigError("warmup_iters", f"must be < lr_decay_iters ({a['lr_decay_iters']}), got {a['warmup_iters']}")


def _pgolf_warmdown(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
    """parameter-golf's iteration-based lr_mul (I = iterations, W = warmdown_iters):
    ``1.0 if W <= 0``; ``max((I - step) / max(W, 1), 0)`` if ``max(I - W, 0) <= step < I``; else ``1.0``.
    """
    iterations = a["iterations"] if a["iterations"] is not None else total
    warmdown = a["warmdown_iters"] if a["warmdown_iters"] is not None else int(a["warmdown_frac"] * iterations)
    it = steps.astype(np.float64)
    if warmdown <= 0:
        return np.ones_like(it)
    start = max(iterations - warmdown, 0)
    ramp = np.maximum((iterations - it) / max(warmdown, 1), 0.0)
    return np.where((it >= start) & (it < iterations), ramp, 1.0)


def _seed000_cosine(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
    """Seed 000's lr_mul: ``f + 0.5 (1 - f) (1 + cos(pi step / max(I, 1)))``, f = min_lr_frac, I = iterations."""
    iterations = a["iterations"] if a["iterations"] is not None else total
    f = a["min_lr_frac"]
    progress = steps.astype(np.float64) / max(iterations, 1)
    return f + 0.5 * (1.0 - f) * (1.0 + np.cos(np.pi * progress))


def _seed003_horizon(total: int, a: Args) -> tuple[int, int]:
    max_iters = a["max_iters"] if a["max_iters"] is not None else total
    decay = a["lr_decay_iters"] if a["lr_decay_iters"] is not None else max_iters
    return max_iters, decay


def _seed003_hold_cosine_poly(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
    """Seed 003's first get_lr (learning_rate = 1) with its overrides W = int(max_iters * 0.02), min_lr = 1/20:
    ``it < W: (it+1)/(W+1)``; ``it >= D: min_lr``; hold 1 until ``H = max(W+1, int(D*0.70))``; cosine from 1
    to ``mid = min_lr + 0.35 (1 - min_lr)`` until ``S = max(H+1, int(D*0.90))``; then
    ``min_lr + (1 - t)^2 (mid - min_lr)``, ``t = (it - S) / (D - S)``.
    """
    max_iters, decay = _seed003_horizon(total, a)
    warmup = int(max_iters * 0.02)
    min_lr = 1.0 / 20
    hold_end = max(warmup + 1, int(decay * 0.70))
    tail_start = max(hold_end + 1, int(decay * 0.90))
    it = steps.astype(np.float64)
    mid = min_lr + 0.35 * (1.0 - min_lr)
    with np.errstate(divide="ignore", invalid="ignore"):  # unused branches may divide by zero
        t_cos = (it - hold_end) / (tail_start - hold_end)
        cosine = mid + 0.5 * (1.0 + np.cos(np.pi * t_cos)) * (1.0 - mid)
        t_tail = (it - tail_start) / (decay - tail_start)
        tail = min_lr + (1.0 - t_tail) ** 2 * (mid - min_lr)
    return np.select(
        [it < warmup, it >= decay, it < hold_end, it < tail_start],
        [(it + 1) / (warmup + 1), min_lr, 1.0, cosine],
        tail,
    )


def _seed003_sqrt_hold_cosine(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
    """Seed 003's second get_lr (learning_rate = 1) with W = int(max_iters * 0.03), min_lr = 1/25:
    ``it < W: sqrt((it+1)/(W+1))``; ``it >= D: min_lr``; hold 1 until ``H = max(W+1, int(D*0.65))``; then
    ``floor + 0.5 (1 + cos(pi t)) (1 - floor)``, ``t = (it - H) / (D - H)``, ``floor = min_lr + 0.1 (1 - min_lr)``.
    """
    max_iters, decay = _seed003_horizon(total, a)
    warmup = int(max_iters * 0.03)
    min_lr = 1.0 / 25
    hold_end = max(warmup + 1, int(decay * 0.65))
    it = steps.astype(np.float64)
    floor = min_lr + 0.10 * (1.0 - min_lr)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (it - hold_end) / (decay - hold_end)
        cosine = floor + 0.5 * (1.0 + np.cos(np.pi * t)) * (1.0 - floor)
    return np.select(
        [it < warmup, it >= decay, it < hold_end],
        [np.sqrt((it + 1) / (warmup + 1)), min_lr, 1.0],
        cosine,
    )


def _shape_formula(build: Callable[[Args], Shape]) -> Callable[[np.ndarray, int, Args], np.ndarray]:
    """A formula that evaluates the `Shape` built from the preset's arguments."""

    def formula(steps: np.ndarray, total: int, a: Args) -> np.ndarray:
        return build(a)._evaluate(steps, total)

    return formula


def _check_wsd(a: Args) -> None:
    if a["warmup_frac"] > 1.0 - a["cooldown_frac"]:
        raise ConfigError("cooldown_frac", f"warmup_frac + cooldown_frac must be <= 1, got "
                                           f"{a['warmup_frac']:g} + {a['cooldown_frac']:g}")


def _wsd(a: Args, shape: str) -> Shape:
    """Warmup, stable at peak until 1 - cooldown_frac, then `shape` down to `floor`."""
    return Shape(warmup_frac=a["warmup_frac"], hold_frac=1.0 - a["cooldown_frac"], shape=shape, floor=a["floor"])


_WARMUP_FRAC = Param("warmup_frac", float, 0.02, "linear warmup length, fraction of T", lo=0.0, hi=1.0)
_MAX_ITERS = Param("max_iters", int, None, "the source's max_iters (default T)", lo=1)
_DECAY_ITERS = Param("lr_decay_iters", int, None, "the source's lr_decay_iters (default max_iters)", lo=1)
_FLOOR = Param("floor", float, 0.0, "final LR as a fraction of peak", lo=0.0, hi=1.0, hi_open=True)

_SPECS: tuple[PresetSpec, ...] = (
    PresetSpec(
        "nanogpt_cosine", "nanoGPT: linear warmup (it+1)/(W+1), cosine to min_lr at lr_decay_iters",
        (Param("warmup_iters", int, None, "W (default int(warmup_frac * T))", lo=0),
         Param("lr_decay_iters", int, None, "D (default T)", lo=1),
         Param("warmup_frac", float, 0.02, "W / T when warmup_iters is not given", lo=0.0, hi=1.0, hi_open=True),
         Param("min_lr_ratio", float, 0.1, "min_lr / learning_rate (nanoGPT: 6e-5 / 6e-4)", lo=0.0, hi=1.0)),
        _nanogpt_cosine, "karpathy/nanoGPT train.py get_lr", _check_nanogpt),
    PresetSpec(
        "pgolf_warmdown", "parameter-golf: constant 1, then linear warmdown (I - step)/W over the last W steps",
        (Param("iterations", int, None, "I (default T)", lo=1),
         Param("warmdown_iters", int, None, "W (default int(warmdown_frac * I))", lo=0),
         Param("warmdown_frac", float, 0.06, "W / I when warmdown_iters is not given", lo=0.0, hi=1.0)),
        _pgolf_warmdown, "parameter-golf train_gpt.py lr_mul, iteration-based branch"),
    PresetSpec(
        "seed000_cosine", "seed 000: cosine from 1 to min_lr_frac over iterations, no warmup",
        (Param("iterations", int, None, "I (default T)", lo=1),
         Param("min_lr_frac", float, 0.1, "the final multiplier", lo=0.0, hi=1.0)),
        _seed000_cosine, "seed 000, its lr_mul"),
    PresetSpec(
        "seed003_hold_cosine_poly",
        "seed 003 #1: 2% linear warmup, hold to 70%, cosine to 35% of range by 90%, quadratic tail to lr/20",
        (_MAX_ITERS, _DECAY_ITERS), _seed003_hold_cosine_poly, "seed 003, its first get_lr"),
    PresetSpec(
        "seed003_sqrt_hold_cosine",
        "seed 003 #2: 3% sqrt warmup, hold to 65%, cosine to min_lr + 10% of range (min_lr = lr/25)",
        (_MAX_ITERS, _DECAY_ITERS), _seed003_sqrt_hold_cosine, "seed 003, its second get_lr"),
    PresetSpec(
        "wsd_sqrt", "warmup-stable-decay with a 1-sqrt cooldown f + (1-f)(1-sqrt(s)) (Hägele et al. 2024)",
        (_WARMUP_FRAC, Param("cooldown_frac", float, 0.2, "cooldown length, fraction of T", lo=0.0, hi=1.0), _FLOOR),
        _shape_formula(lambda a: _wsd(a, "sqrt")), "arXiv:2405.18392", _check_wsd),
    PresetSpec(
        "wsd_exp", "warmup-stable-decay with an exponential decay (MiniCPM), renormalised to end at floor",
        (_WARMUP_FRAC, Param("cooldown_frac", float, 0.1, "decay length, fraction of T", lo=0.0, hi=1.0), _FLOOR),
        _shape_formula(lambda a: _wsd(a, "exponential")), "arXiv:2404.06395", _check_wsd),
    PresetSpec(
        "linear_to_zero", "linear warmup, then linear decay to zero (Bergsma et al. 2025)",
        (_WARMUP_FRAC,),
        _shape_formula(lambda a: Shape(warmup_frac=a["warmup_frac"], hold_frac=a["warmup_frac"], shape="linear")),
        "arXiv:2502.15938"),
    PresetSpec(
        "constant", "optional linear warmup, then the peak LR throughout",
        (Param("warmup_frac", float, 0.0, "linear warmup length, fraction of T", lo=0.0, hi=1.0),),
        _shape_formula(lambda a: Shape(warmup_frac=a["warmup_frac"], hold_frac=1.0)), ""),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}


def _spec(name: Any) -> PresetSpec:
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ConfigError("preset", f"unknown preset {name!r}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def list_presets() -> list[str]:
    """Every preset name, in a stable order."""
    return [spec.name for spec in _SPECS]


def preset_spec(name: str) -> PresetSpec:
    """The definition behind a preset name (description, arguments, source)."""
    return _spec(name)


def get_preset(name: str, **args: Any) -> PresetSchedule:
    """The preset `name` with `args` (validated; unknown names and arguments raise `ConfigError`)."""
    return PresetSchedule(name, tuple(args.items()))
