"""The Multi-Power Law (Luo et al. 2025, arXiv 2503.12811): the loss curve of a pretraining run as a
function of its learning-rate schedule, plus a bounded least-squares fit of its seven parameters.

    L(t)  = L0 + A * (S1(t) + S_W)^(-alpha) - LD(t)
    LD(t) = B * sum_{k=1..t} (eta_{k-1} - eta_k) * G(eta_k^(-gamma) * S_k(t))
    G(x)  = 1 - (C x + 1)^(-beta),     S_k(t) = sum_{tau=k..t} eta_tau,     S1(t) = S_1(t)

Two forms of the law exist, and parameters fitted in one do not carry over to the other (`LawForm`):
- ``paper`` (the default): as printed above. `t` counts the steps *after* warmup, `S_W` is the LR sum of
  the warmup steps and `eta_0` is the first post-warmup LR (the peak), so a schedule that holds its peak
  has LD = 0.
- ``code``: the form of the authors' reference implementation, which their published parameters (our
  presets) were fitted with. `t` counts every step from the first, warmup included: S1 sums every LR so
  far, and LD sums over every LR change from step 1, so the warmup's LR *rises* enter LD as negative drops.
  It is exactly the paper form with a warmup of zero steps. At 24k steps with a 2,160-step warmup it is
  0.11-0.16 nats above the paper form, and it alone reproduces the authors' predictions from their
  parameters (tests/trainable/test_law_forms.py).
Why the paper form stays the default: in the code form a warmup from ~0 costs about B x peak LR for good
(the rises' G is ~1 at once), ~0.11 nats with the 25M preset, and a schedule without warmup pays nothing.
The authors' runs all shared one warmup, so their fit absorbed that term; across schedules whose warmups
differ, as a schedule sweep's do, the code form ranks them wrongly (`constant`, which has none, comes out
0.09 nats *better* than linear_to_zero at 24k steps). The paper form ranks them as real runs do, at the
cost of its 0.11-0.16 nats lower level.
Learning rates are *absolute* (peak LR x multiplier): LD depends on eta itself through `eta_k^(-gamma)`.

Step convention (the trainer's): entry ``i`` of `loss_curve` is the loss after ``i + 1`` optimizer steps,
the first taken at ``lrs[0]``; the `steps` arguments count steps done (1..T), like `Report.step`.
During warmup the law is extended with ``L0 + A * (LR sum so far)^(-alpha)``, which is continuous with the
post-warmup formula at the end of warmup.

Cost: LD(t) sums over every earlier LR *change* (constant stretches cost nothing), so the definition costs
O(len(steps) x changes): cheap at a few eval points, O(T^2 / 2) for a whole cosine curve. For that case we
evaluate the identical quantity by a Laplace representation of G and a running sum over steps, O(T x ~100
quadrature nodes), equal to the definition to ~1e-12 nats (`trainable.loss_drop` has both routes). Measured
(2 loaded CPU cores): whole 20k-step cosine curve ~0.2-0.4 s (the definition: ~7 s); 100 eval points of it
~0.05-0.15 s; final loss only, a few ms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares, nnls

from search_spaces.errors import ConfigError
from trainable.loss_drop import ETA_FLOOR, loss_drop

__all__ = [
    "LAW_PRESETS",
    "LawForm",
    "PRESET_PEAK_LR",
    "PresetSetting",
    "preset_setting",
    "MultiPowerLaw",
    "fit",
    "get_law",
    "infer_warmup_steps",
    "list_laws",
    "predict_final_loss",
    "default_prior",
]

class LawForm(str, Enum):
    """Where the warmup goes in the law (see the module docstring): the parameters belong to one form."""

    CODE = "code"  # the authors' reference implementation: warmup inside S1 and LD (what the presets fit)
    PAPER = "paper"  # the paper's formula: warmup only through S_W, LD from the peak on (the default)


@dataclass(frozen=True)
class MultiPowerLaw:
    """The seven Multi-Power-Law parameters (names as in the paper) and the form they belong to.

    `L0` is the irreducible loss, `A`/`alpha` the power law in the LR sum, `B`/`C`/`beta`/`gamma` the
    loss drop that LR decay unlocks. `B` has units of 1/LR and `C` of LR^(gamma-1): a law fitted at one
    peak LR does not transfer to another by rescaling the multipliers alone. Validated on construction.
    """

    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float
    form: LawForm = LawForm.PAPER

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "form", LawForm(self.form))
        except ValueError:
            raise ConfigError("form", f"must be one of {', '.join(f.value for f in LawForm)}, "
                                      f"got {self.form!r}") from None
        for f in fields(self):
            if f.name == "form":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f.name, f"must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        for name in ("A", "B"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("alpha", "C", "beta"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if self.gamma < 0:
            raise ConfigError("gamma", f"must be >= 0, got {self.gamma}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MultiPowerLaw":
        """Parameters from a mapping with exactly the seven names (and optionally ``form``, default
        ``paper``); raises `ConfigError` otherwise."""
        if not isinstance(d, dict):
            raise ConfigError("", f"expected a mapping of law parameters, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise ConfigError(str(key), f"unknown law parameter (allowed: {', '.join(names)})")
        missing = [n for n in _NAMES if n not in d]
        if missing:
            raise ConfigError(missing[0], "missing law parameter")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The seven parameters and ``form`` (as its string value, so the dict is plain YAML/JSON)."""
        return {**asdict(self), "form": self.form.value}

    def in_form(self, form: LawForm | str) -> "MultiPowerLaw":
        """The same parameters read in another form (a different law: use it to compare the forms)."""
        return MultiPowerLaw(**{**self.to_dict(), "form": LawForm(form).value})

    def effective_warmup(self, warmup_steps: int) -> int:
        """The warmup the paper-form formula is evaluated with: the code form is the paper form with none."""
        return 0 if self.form is LawForm.CODE else warmup_steps

    # -----------------------------------------------------------------------------------------------------
    def loss_curve(
        self, lrs: np.ndarray, warmup_steps: int, steps: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Predicted loss after each step of a run with absolute learning rates `lrs` (one per step).

        Returns ``len(lrs)`` values (entry i = after i + 1 steps), or one value per entry of `steps`
        (steps done, 1..len(lrs)) when given. In the paper form the `warmup_steps` leading steps form S_W;
        the code form takes them as ordinary steps (the argument is still checked).
        """
        lrs = _check_lrs(lrs)
        T = len(lrs)
        W = self.effective_warmup(_check_warmup(warmup_steps, T))
        idx = np.arange(T) if steps is None else _step_indices(steps, T)
        cum = np.cumsum(lrs)  # cum[i] = LR sum of steps 0..i (warmup included): S1 + S_W after i+1 steps
        # The power term uses the whole LR sum so far, warmup or not (S1(t) + S_W after warmup).
        # A sum of zero (a warmup starting at LR 0) has no finite prediction; the floor keeps it finite.
        total = np.maximum(cum[idx], np.finfo(np.float64).tiny)
        loss = self.L0 + self.A * total ** (-self.alpha)
        after = idx >= W
        if np.any(after) and self.B > 0:
            loss[after] -= loss_drop(self, lrs[W:], idx[after] - W)
        return loss

    def final_loss(self, lrs: np.ndarray, warmup_steps: int) -> float:
        """Predicted loss after the last step (O(T) per LR change, cheap)."""
        return float(self.loss_curve(lrs, warmup_steps, steps=[len(lrs)])[0])


# ---------------------------------------------------------------------------------------------------------
# Presets.
#
# Fitted values for the paper's 25M / 100M / 400M Llama-2-style models, as published in the parameter table
# ("best parameters", fitted with a Huber loss) of the README of the authors' repository
# github.com/thu-yao-01-luo/MultiPowerLaw (read from a stored copy of that README; its authors note they
# may differ slightly from the paper's own table). They were fitted with that repository's code, so they
# belong to the code form (`LawForm.CODE`): read in the paper form (the default, see the module docstring
# for why) they predict final losses 0.11-0.16 nats too low. In either form they make the cosine-vs-WSD gap of the authors' 24k-step runs 1.8-3.3x the
# real one (tests/trainable/test_law_forms.py): simulated schedule differences are exaggerated. Those fits use absolute LRs of runs whose peak LR we take
# to be 3e-4 (PRESET_PEAK_LR): that peak LR is OUR ASSUMPTION, not checked against the paper's text. Use
# the presets at a peak LR near it; B and C carry LR units, so far from it the curves are extrapolations.
LAW_PRESETS: dict[str, MultiPowerLaw] = {
    "mpl_25m": MultiPowerLaw(L0=3.040, A=0.525, alpha=0.508, B=363.788, C=2.066, beta=0.583, gamma=0.641),
    "mpl_100m": MultiPowerLaw(L0=2.651, A=0.601, alpha=0.453, B=437.946, C=2.132, beta=0.598, gamma=0.655),
    "mpl_400m": MultiPowerLaw(L0=2.375, A=0.654, alpha=0.429, B=523.425, C=2.025, beta=0.594, gamma=0.635),
    # The proving ground (docs/proving_ground.md): our own fit (`fit`, paper form) to the seed-mean curves of
    # the 6 presets that warm up, 5 seeds, eval steps 150..1200 of 1,200 at peak LR 4e-3
    # (benchmarks/proving_ground_law.py; figures in BENCHMARKS.md). It predicts the final loss of 4 held-out
    # shapes within 0.008 nats on average (max 0.016) and ranks the 10 shapes with a warmup with Spearman
    # 0.976. L0 and beta sit on their bounds: an empirical fit of a 1,200-step horizon, not a statement about
    # the irreducible loss; outside ~600-2,400 steps it is an extrapolation. Shapes without a warmup are
    # unstable at 4e-3 on this model (0.34-0.45 nats worse than the law says); the law does not model that.
    "proving_ground": MultiPowerLaw(L0=1.04637e-16, A=2.4604, alpha=0.156553, B=1671.38, C=0.0128332, beta=0.01,
                                    gamma=1.41331),
}
PRESET_PEAK_LR = 3e-4


@dataclass(frozen=True)
class PresetSetting:
    """Where a preset was fitted, which a simulator using it takes as its defaults: the peak LR of its runs
    (B and C carry LR units, so a law is only meaningful near it) and the seed noise measured on them
    (`noise_std` per run, `seed_offset_std` shared by every run of a seed; `trainable.simulator`)."""

    peak_lr: float
    noise_std: float
    seed_offset_std: float


# The paper presets' noise is the seed-to-seed std of small GPTs' final loss (~0.0014-0.002 nats), split
# between a per-run part and a per-seed offset; the authors' tables give none.
_PAPER_SETTING = PresetSetting(peak_lr=PRESET_PEAK_LR, noise_std=0.0015, seed_offset_std=0.001)
_PRESET_SETTINGS: dict[str, PresetSetting] = {name: _PAPER_SETTING for name in ("mpl_25m", "mpl_100m", "mpl_400m")}
# Measured on the proving ground's final losses (two-way ANOVA over shapes x seeds, shapes with a warmup).
_PRESET_SETTINGS["proving_ground"] = PresetSetting(peak_lr=4e-3, noise_std=0.0089, seed_offset_std=0.011)


def preset_setting(law: str | Any) -> PresetSetting:
    """The setting a law preset was fitted in; the paper presets' for a law given as parameters."""
    return _PRESET_SETTINGS.get(law, _PAPER_SETTING) if isinstance(law, str) else _PAPER_SETTING


def list_laws() -> list[str]:
    """Names of the law presets."""
    return list(LAW_PRESETS)


def get_law(name: str) -> MultiPowerLaw:
    """A preset by name; raises `ConfigError` (field ``law``) listing the names otherwise."""
    if not isinstance(name, str) or name not in LAW_PRESETS:
        raise ConfigError("law", f"unknown law preset {name!r} (known: {', '.join(LAW_PRESETS)})")
    return LAW_PRESETS[name]


def infer_warmup_steps(lrs: np.ndarray) -> int:
    """Warmup length of a schedule: the steps before it first reaches its peak LR.

    Our schedules do not carry a separate warmup field (a shape, segments or a preset formula all just give
    multipliers), and the law only needs "the steps before the peak", which this is for any of them.
    """
    lrs = _check_lrs(lrs)
    return int(np.argmax(lrs))


# ---------------------------------------------------------------------------------------------------------
# Fit.

_NAMES = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
_LINEAR = ("L0", "A", "B")  # the law is linear in these for fixed alpha, C, beta, gamma
_SHAPE = (2, 4, 5, 6)  # alpha, log C', beta, gamma: the nonlinear "shape" coordinates of the fit


def fit(
    steps: Sequence[int] | Sequence[Sequence[int]],
    losses: Sequence[float] | Sequence[Sequence[float]],
    lrs: np.ndarray | Sequence[np.ndarray],
    warmup_steps: int | Sequence[int],
    init: MultiPowerLaw | None = None,
    *,
    fixed: Sequence[str] = (),
    f_scale: float = 0.02,
    prior_strength: float = 0.0,
    form: LawForm | str | None = None,
) -> MultiPowerLaw:
    """Fit a law to observed losses of one run or several runs (the paper fits three).

    One run: `steps` (steps done, 1..T), `losses` (same length) and the run's full absolute `lrs` (T).
    Several runs: lists of those, one entry per run; `warmup_steps` an int for all or one per run.
    Points whose LR sum so far is 0 (the first steps of a warmup from LR 0) are left out: the law has no
    finite value there. `fixed` names parameters held at their value in `init`. `prior_strength` > 0 pulls
    the shape parameters (alpha, log C', beta, gamma; see below) towards `init`'s: each adds a residual
    ``prior_strength * (value - init value)`` in nats, so 0.01 makes a 0.1 change in alpha cost as much as
    one point missed by 0.001 nats. Useful for early prefixes, where the data alone leave them loose.
    When no observed step comes after an LR decrease, B, C, beta, gamma cannot be identified and are held
    at `init` (or at the middle paper preset moved to this peak LR) automatically. `form` is the law's
    form (`LawForm`); by default `init`'s, else the paper form.

    Method, in two stages, both `scipy.optimize.least_squares` (trust-region reflective, bounded):
    1. Initialisation by variable projection. L0, A and B enter linearly, so for given (alpha, C, beta,
       gamma) they are solved exactly by non-negative least squares, and only those four are searched,
       from `init`, from a paper preset moved to this peak LR and from a start unlike the paper's fits;
       the lowest residual wins.
    2. Polish of all free parameters from there on ``[L0, log A, alpha, log B', log C', beta, gamma]``
       (``B' = B * eta_peak``, ``C' = C * eta_peak^(1 - gamma)``: dimensionless, so one set of bounds serves
       any peak LR) with a Huber loss of scale `f_scale` nats: the seed noise (~0.0015) stays in the
       quadratic zone, loss spikes do not drag the fit.
    The observed steps' (step, earlier LR change) pairs are laid out once, so each of the few hundred
    evaluations costs one vectorised pass over them.
    """
    try:
        form = LawForm(form if form is not None else (init.form if init is not None else LawForm.PAPER))
    except ValueError:
        raise ConfigError("form", f"must be one of {', '.join(f.value for f in LawForm)}, got {form!r}") from None
    if init is not None and init.form is not form:
        init = init.in_form(form)
    runs = _normalise_runs(steps, losses, lrs, warmup_steps)
    if form is LawForm.CODE:  # the code form is the paper form without a separate warmup
        runs = [(s, y, lr, 0) for s, y, lr, _ in runs]
    for name in fixed:
        if name not in _NAMES:
            raise ConfigError("fixed", f"unknown parameter {name!r} (allowed: {', '.join(_NAMES)})")
    if fixed and init is None:
        raise ConfigError("init", "fixed parameters need an init law to take their values from")
    if not (isinstance(prior_strength, (int, float)) and math.isfinite(prior_strength) and prior_strength >= 0):
        raise ConfigError("prior_strength", f"must be a finite number >= 0, got {prior_strength!r}")
    if prior_strength > 0 and init is None:
        raise ConfigError("init", "prior_strength needs an init law to pull towards")
    eta_peak = max(float(np.max(r[2])) for r in runs)
    if eta_peak <= 0:
        raise ConfigError("lrs", "all learning rates are zero; nothing to fit")
    obs = _Observations(runs)
    fixed = tuple(fixed)
    if not obs.has_decay and not set(fixed) >= {"B", "C", "beta", "gamma"}:
        # Only warmup / constant LR seen: B, C, beta, gamma move no residual. Hold them at the prior rather
        # than let the optimiser wander along flat directions.
        fixed = tuple(sorted(set(fixed) | {"B", "C", "beta", "gamma"}))
        if init is None:
            init = _moved_preset(LAW_PRESETS["mpl_100m"], eta_peak).in_form(form)
    y_max = float(np.max(obs.y))
    space = _Space(eta_peak, y_max, form)
    shape = [i for i in _SHAPE if _NAMES[i] not in fixed]
    anchor = space.to_theta(init)[shape] if init is not None else None

    def penalty(theta: np.ndarray) -> np.ndarray:
        if not prior_strength:
            return np.zeros(0)
        return prior_strength * (theta[shape] - anchor)

    starts = [init] if init is not None else []
    if not fixed:
        # The three paper fits have nearly the same alpha, C, beta, gamma: one of them, plus a start far from
        # them (flatter power law, sharper and less LR-sensitive drop) in case this run is unlike them.
        typical = _moved_preset(LAW_PRESETS["mpl_100m"], eta_peak).in_form(form)
        unusual = MultiPowerLaw(**{**typical.to_dict(), "alpha": 0.25, "beta": 1.2, "gamma": 0.3})
        starts = [_varpro(obs, space, starts + [typical, unusual], penalty)]
    elif init is not None and not set(fixed) & set(_LINEAR):
        # Held nonlinear parameters: L0, A (and B) still have an exact starting point.
        starts = [obs.solve_linear(init)[0]]
    free = [i for i, n in enumerate(_NAMES) if n not in fixed]

    def residuals(theta_free: np.ndarray, base: np.ndarray) -> np.ndarray:
        theta = base.copy()
        theta[free] = theta_free
        return np.concatenate([obs.predict(space.to_law(theta, init, fixed)) - obs.y, penalty(theta)])

    best: tuple[float, np.ndarray] | None = None
    for start in starts:
        base = space.clip(space.to_theta(start))
        res = least_squares(
            residuals, base[free], args=(base,), bounds=(space.lower[free], space.upper[free]),
            loss="huber", f_scale=f_scale, x_scale="jac", max_nfev=200,
        )
        if best is None or res.cost < best[0]:
            theta = base.copy()
            theta[free] = res.x
            best = (float(res.cost), theta)
    assert best is not None
    return space.to_law(best[1], init, fixed)


def predict_final_loss(
    steps: Sequence[int], losses: Sequence[float], lrs: np.ndarray, warmup_steps: int | None = None,
    prior: MultiPowerLaw | None = None, prior_strength: float = 0.0,
) -> float:
    """Final loss of a run predicted from the losses seen so far (what a `predicted` rung metric reports).

    `lrs` is the run's *whole* absolute LR sequence (the schedule is known in advance), `steps`/`losses`
    the prefix observed. `warmup_steps` defaults to `infer_warmup_steps(lrs)`. `prior` seeds the fit and,
    while no LR decay has been observed yet, supplies B, C, beta, gamma; `prior_strength` pulls the fit
    towards it (see `fit`). A good prior is a law fitted to the sweep's finished baseline runs.
    """
    lrs = _check_lrs(lrs)
    w = infer_warmup_steps(lrs) if warmup_steps is None else warmup_steps
    return fit(steps, losses, lrs, w, init=prior, prior_strength=prior_strength).final_loss(lrs, w)


def default_prior(lrs: np.ndarray) -> MultiPowerLaw:
    """The prior to use when nothing better is known: the middle paper preset (`mpl_100m`) moved to the
    peak LR of `lrs` (B and C rescaled so their dimensionless forms stay the paper's)."""
    return _moved_preset(LAW_PRESETS["mpl_100m"], float(np.max(_check_lrs(lrs))))


class _Space:
    """The fit's coordinates: ``[L0, log A, alpha, log B', log C', beta, gamma]`` and their bounds."""

    def __init__(self, eta_peak: float, y_max: float, form: LawForm):
        self.eta_peak, self.form = eta_peak, form
        self.lower = np.array([0.0, math.log(1e-6), 0.01, math.log(1e-8), math.log(1e-6), 0.01, 0.0])
        self.upper = np.array([y_max, math.log(1e4), 3.0, math.log(10.0), math.log(1e8), 3.0, 2.0])

    def clip(self, theta: np.ndarray) -> np.ndarray:
        return np.clip(theta, self.lower + 1e-9, self.upper - 1e-9)

    def to_theta(self, law: MultiPowerLaw) -> np.ndarray:
        e = self.eta_peak
        return np.array([
            law.L0, math.log(max(law.A, 1e-12)), law.alpha, math.log(max(law.B * e, 1e-12)),
            math.log(law.C * e ** (1.0 - law.gamma)), law.beta, law.gamma,
        ])

    def to_law(self, theta: np.ndarray, init: MultiPowerLaw | None = None, fixed: Sequence[str] = ()) -> MultiPowerLaw:
        L0, logA, alpha, logBp, logCp, beta, gamma = (float(v) for v in theta)
        e = self.eta_peak
        values = dict(L0=L0, A=math.exp(logA), alpha=alpha, B=math.exp(logBp) / e,
                      C=math.exp(logCp) / e ** (1.0 - gamma), beta=beta, gamma=gamma, form=self.form)
        # Fixed parameters come back bit-for-bit (the log round trip would perturb them in the last digit).
        values.update({name: getattr(init, name) for name in fixed})
        return MultiPowerLaw(**values)


class _Observations:
    """The observed points of all runs, laid out for fast repeated evaluation of the law during a fit.

    Per point: the LR sum so far (power term) and, for points after warmup, one entry per earlier LR change
    k <= t holding S_k(t), log eta_k and d_k, flattened; LD is then a bincount over those entries.
    """

    def __init__(self, runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]):
        self.y = np.concatenate([r[1] for r in runs])
        totals, rows, S, log_eta, d_pairs = [], [], [], [], []
        offset = 0
        for steps, _, lrs, w in runs:
            idx = steps - 1
            totals.append(np.maximum(np.cumsum(lrs)[idx], np.finfo(np.float64).tiny))
            post = lrs[w:]
            d = np.concatenate([[0.0], post[:-1] - post[1:]])
            k = np.flatnonzero(d)
            P = np.cumsum(post)
            for j in np.flatnonzero(idx >= w):
                ks = k[: np.searchsorted(k, idx[j] - w, side="right")]
                rows.append(np.full(len(ks), offset + j))
                S.append(P[idx[j] - w] - P[ks] + post[ks])
                log_eta.append(np.log(np.maximum(post[ks], ETA_FLOOR)))
                d_pairs.append(d[ks])
            offset += len(idx)
        self.total = np.concatenate(totals)
        cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        self.rows, self.S = cat(rows, np.int64), cat(S, np.float64)
        self.log_eta, self.d = cat(log_eta, np.float64), cat(d_pairs, np.float64)
        self.has_decay = bool(np.any(self.d > 0))

    def drop_sum(self, C: float, beta: float, gamma: float) -> np.ndarray:
        """sum_k d_k G(eta_k^(-gamma) S_k(t)) at every point (LD / B)."""
        if len(self.d) == 0:
            return np.zeros(len(self.y))
        x = self.S * np.exp(math.log(C) - gamma * self.log_eta)
        g = -np.expm1(-beta * np.log1p(x))
        return np.bincount(self.rows, weights=self.d * g, minlength=len(self.y))

    def predict(self, law: MultiPowerLaw) -> np.ndarray:
        return law.L0 + law.A * self.total ** (-law.alpha) - law.B * self.drop_sum(law.C, law.beta, law.gamma)

    def solve_linear(self, law: MultiPowerLaw) -> tuple[MultiPowerLaw, np.ndarray]:
        """`law` with L0, A, B replaced by their non-negative least-squares values, and its prediction."""
        drop = self.drop_sum(law.C, law.beta, law.gamma)
        X = np.stack([np.ones_like(self.total), self.total ** (-law.alpha), -drop], axis=1)
        scale = np.maximum(np.abs(X).max(axis=0), 1e-300)  # equilibrate columns (B's is ~1e-4 in LR units)
        coef, _ = nnls(X / scale, self.y)
        L0, A, B = coef / scale
        return MultiPowerLaw(**{**law.to_dict(), "L0": float(L0), "A": float(A), "B": float(B)}), X @ (coef / scale)


def _varpro(obs: _Observations, space: _Space, starts: list[MultiPowerLaw], penalty) -> MultiPowerLaw:
    """Search (alpha, log C', beta, gamma) with L0, A, B solved exactly at every point; best start wins.

    `penalty(theta)` gives the prior residuals (empty without a prior); they join the data residuals.
    """
    nonlinear = list(_SHAPE)

    def law_at(v: np.ndarray) -> tuple[MultiPowerLaw, np.ndarray]:
        theta = space.to_theta(starts[0])
        theta[nonlinear] = v
        theta[[1, 3]] = 0.0  # A, B placeholders: solve_linear replaces them
        return obs.solve_linear(space.to_law(theta))

    def residuals(v: np.ndarray) -> np.ndarray:
        theta = space.to_theta(starts[0])
        theta[nonlinear] = v
        return np.concatenate([law_at(v)[1] - obs.y, penalty(theta)])

    # An RMS residual this small means the curve has been found (seed noise is ~1e-3): skip other starts.
    good_enough = 0.5 * len(obs.y) * 1e-5**2
    best: tuple[float, MultiPowerLaw] | None = None
    for start in starts:
        if best is not None and best[0] < good_enough:
            break
        v0 = space.clip(space.to_theta(start))[nonlinear]
        res = least_squares(residuals, v0, bounds=(space.lower[nonlinear], space.upper[nonlinear]),
                            x_scale="jac", max_nfev=100)
        if best is None or res.cost < best[0]:
            best = (float(res.cost), law_at(res.x)[0])
    assert best is not None
    law = best[1]
    # Keep the linear parameters inside the polish's bounds (A or B may have come out exactly 0).
    return MultiPowerLaw(**{**law.to_dict(), "L0": min(law.L0, space.upper[0]), "A": max(law.A, 1e-6),
                            "B": max(law.B, 1e-8 / space.eta_peak)})


def _moved_preset(law: MultiPowerLaw, eta_peak: float) -> MultiPowerLaw:
    """A preset moved to peak LR `eta_peak`: B and C rescaled so the dimensionless B', C' are unchanged."""
    ratio = PRESET_PEAK_LR / eta_peak
    return MultiPowerLaw(L0=law.L0, A=law.A, alpha=law.alpha, B=law.B * ratio,
                         C=law.C * ratio ** (1.0 - law.gamma), beta=law.beta, gamma=law.gamma, form=law.form)


# ---------------------------------------------------------------------------------------------------------
# Input checks.


def _check_lrs(lrs: Any, field: str = "lrs") -> np.ndarray:
    arr = np.asarray(lrs, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ConfigError(field, f"expected a non-empty 1-D array of learning rates, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(field, "learning rates must be finite and >= 0")
    return arr


def _check_warmup(warmup_steps: Any, T: int, field: str = "warmup_steps") -> int:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)):
        raise ConfigError(field, f"expected an integer, got {warmup_steps!r}")
    if not 0 <= warmup_steps < T:
        raise ConfigError(field, f"must be in [0, {T - 1}] for {T} steps, got {warmup_steps}")
    return int(warmup_steps)


def _step_indices(steps: Any, T: int, field: str = "steps") -> np.ndarray:
    arr = np.asarray(steps)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(field, "expected a 1-D sequence of integer step counts")
    if len(arr) and (arr.min() < 1 or arr.max() > T):
        raise ConfigError(field, f"step counts must be in [1, {T}], got {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64) - 1


def _normalise_runs(
    steps: Any, losses: Any, lrs: Any, warmup_steps: Any,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(steps, losses, lrs, warmup) per run, validated, whether one run or a list of runs was given."""
    several = isinstance(lrs, (list, tuple)) and len(lrs) > 0 and np.ndim(lrs[0]) == 1
    if not several:
        steps, losses, lrs, warmup_steps = [steps], [losses], [lrs], [warmup_steps]
    elif isinstance(warmup_steps, (int, np.integer)):
        warmup_steps = [warmup_steps] * len(lrs)
    if not (len(steps) == len(losses) == len(lrs) == len(warmup_steps)):
        raise ConfigError("runs", "steps, losses, lrs and warmup_steps must list the same number of runs")
    runs = []
    for i, (s, y, lr, w) in enumerate(zip(steps, losses, lrs, warmup_steps)):
        where = "" if not several else f"[{i}]"
        lr = _check_lrs(lr, f"lrs{where}")
        idx = _step_indices(s, len(lr), f"steps{where}") + 1
        y = np.asarray(y, dtype=np.float64)
        if y.shape != idx.shape or not np.all(np.isfinite(y)):
            raise ConfigError(f"losses{where}", "expected finite losses, one per step")
        # Points before any LR has been applied (a warmup from LR 0) have no finite prediction: skip them.
        seen = np.cumsum(lr)[idx - 1] > 0
        runs.append((idx[seen], y[seen], lr, _check_warmup(w, len(lr), f"warmup_steps{where}")))
    if sum(len(r[1]) for r in runs) < 3:
        raise ConfigError("losses", "need at least 3 observed losses to fit")
    return runs
