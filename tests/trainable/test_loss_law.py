"""Multi-Power Law: closed-form special cases, a brute-force reference, and fits that recover the law."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from search_spaces import get_preset
from search_spaces.errors import ConfigError
from trainable.loss_drop import drop_by_pairs, drop_by_scan
from trainable.loss_law import MultiPowerLaw, fit, get_law, infer_warmup_steps, list_laws, predict_final_loss

PEAK = 1e-3
T = 3000
# A law unlike every preset (so the fit cannot just fall back on its own starting points), with B and C
# scaled from paper-like values at LR 3e-4 to PEAK.
TRUTH = MultiPowerLaw(
    L0=3.2, A=0.45, alpha=0.5, B=300 * 3e-4 / PEAK, C=2.5 * (3e-4 / PEAK) ** 0.4, beta=0.55, gamma=0.6,
)


def lrs_of(name: str, total: int = T, peak: float = PEAK) -> np.ndarray:
    return peak * get_preset(name).multipliers(total)


def brute_force(law: MultiPowerLaw, lrs: np.ndarray, W: int) -> np.ndarray:
    """The paper's formula written out literally with Python loops (1-based t and k as in the paper)."""
    post = lrs[W:]
    S_W = float(np.sum(lrs[:W]))
    out = []
    for i in range(len(lrs)):
        if i < W:
            out.append(law.L0 + law.A * float(np.sum(lrs[: i + 1])) ** (-law.alpha))
            continue
        t = i - W + 1
        eta = lambda k: post[max(k - 1, 0)]  # eta_0 := eta_1, the peak after warmup
        S1 = sum(eta(tau) for tau in range(1, t + 1))
        LD = 0.0
        for k in range(1, t + 1):
            S_k = sum(eta(tau) for tau in range(k, t + 1))
            G = 1.0 - (law.C * eta(k) ** (-law.gamma) * S_k + 1.0) ** (-law.beta)
            LD += (eta(k - 1) - eta(k)) * G
        out.append(law.L0 + law.A * (S1 + S_W) ** (-law.alpha) - law.B * LD)
    return np.array(out)


def test_matches_brute_force_formula_on_a_non_monotone_schedule():
    rng = np.random.default_rng(0)
    lrs = np.concatenate([np.linspace(1e-4, 1e-3, 5), rng.uniform(1e-4, 1e-3, 40)])  # ups and downs
    np.testing.assert_allclose(TRUTH.loss_curve(lrs, 5), brute_force(TRUTH, lrs, 5), rtol=0, atol=1e-12)
    # The code form is the same formula over every step: its warmup is no separate term.
    code = TRUTH.in_form("code")
    np.testing.assert_allclose(code.loss_curve(lrs, 5), brute_force(code, lrs, 0), rtol=0, atol=1e-12)
    # The fast route too (LR increases give negative terms, which the running sum must carry as well).
    post = lrs[5:]
    d = np.concatenate([[0.0], post[:-1] - post[1:]])
    k, t = np.flatnonzero(d), np.arange(len(post))
    np.testing.assert_allclose(drop_by_scan(TRUTH, post, d, k, t), drop_by_pairs(TRUTH, post, d, k, t), atol=1e-11)


@pytest.mark.parametrize("beta", [0.02, 0.583, 2.5])
@pytest.mark.parametrize("name", ["nanogpt_cosine", "linear_to_zero", "wsd_sqrt"])
def test_fast_scan_equals_the_direct_pair_sum(name, beta):
    # Two exact routes to LD (the definition summed over pairs, and the Laplace-quadrature running sum)
    # must agree far below any loss difference we care about, including at beta near the fit's bounds.
    law = MultiPowerLaw(**{**get_law("mpl_25m").to_dict(), "beta": beta})
    lrs = lrs_of(name, 1500, 3e-4)
    post = lrs[infer_warmup_steps(lrs):]
    d = np.concatenate([[0.0], post[:-1] - post[1:]])
    k, t = np.flatnonzero(d), np.arange(len(post))
    direct, scan = drop_by_pairs(law, post, d, k, t), drop_by_scan(law, post, d, k, t)
    assert np.max(direct) > 1e-3  # there is a drop to get right
    np.testing.assert_allclose(scan, direct, rtol=0, atol=1e-10)


def test_whole_20k_step_cosine_curve_is_fast():
    lrs = lrs_of("nanogpt_cosine", 20_000, 3e-4)
    start = time.perf_counter()
    curve = get_law("mpl_25m").loss_curve(lrs, infer_warmup_steps(lrs))
    # ~0.3 s on two busy cores; the O(T^2) definition takes ~7 s. 5 s leaves room for a loaded machine.
    assert time.perf_counter() - start < 5.0
    assert np.all(np.diff(curve[1000:]) < 0)  # loss keeps falling through a cosine decay


def test_constant_lr_reduces_to_the_power_law_in_the_lr_sum():
    W = 100
    lrs = np.concatenate([np.linspace(PEAK / W, PEAK, W), np.full(T - W, PEAK)])
    S_W = lrs[:W].sum()
    t = np.arange(1, T - W + 1)
    expected = TRUTH.L0 + TRUTH.A * (PEAK * t + S_W) ** (-TRUTH.alpha)
    np.testing.assert_allclose(TRUTH.loss_curve(lrs, W)[W:], expected, rtol=1e-12)


def test_decay_unlocks_a_loss_drop_that_beats_constant_at_the_end():
    law = get_law("mpl_100m")
    T_long = 24_000  # the paper's horizon at its (assumed) peak LR 3e-4
    const, cos = lrs_of("constant", T_long, 3e-4), lrs_of("nanogpt_cosine", T_long, 3e-4)
    W = infer_warmup_steps(cos)
    no_drop = MultiPowerLaw(**{**law.to_dict(), "B": 0.0})
    LD_end = no_drop.final_loss(cos, W) - law.final_loss(cos, W)
    assert LD_end > 0.05  # B * (eta_0 - eta_T) * G, with G close to 1 long after most of the decay
    assert law.final_loss(cos, W) < law.final_loss(const, 0) - 0.01


def test_steps_argument_equals_the_full_curve_at_those_steps():
    lrs = lrs_of("wsd_sqrt")
    W = infer_warmup_steps(lrs)
    steps = np.array([1, 7, 250, 2999, 3000])
    np.testing.assert_allclose(TRUTH.loss_curve(lrs, W, steps=steps), TRUTH.loss_curve(lrs, W)[steps - 1], rtol=1e-13)


def test_a_schedule_that_decays_to_zero_stays_finite():
    lrs = lrs_of("linear_to_zero", 500)  # starts and ends at LR 0
    curve = TRUTH.loss_curve(lrs, infer_warmup_steps(lrs))
    assert np.all(np.isfinite(curve))


def test_presets_and_validation():
    assert set(list_laws()) == {"mpl_25m", "mpl_100m", "mpl_400m", "proving_ground"}
    # Bigger models reach lower irreducible loss in the published fits.
    assert get_law("mpl_25m").L0 > get_law("mpl_100m").L0 > get_law("mpl_400m").L0
    with pytest.raises(ConfigError) as err:
        get_law("gpt5")
    assert err.value.field == "law"
    with pytest.raises(ConfigError) as err:
        MultiPowerLaw(**{**TRUTH.to_dict(), "alpha": 0.0})
    assert err.value.field == "alpha"
    with pytest.raises(ConfigError) as err:
        MultiPowerLaw.from_dict({**TRUTH.to_dict(), "delta": 1.0})
    assert err.value.field == "delta"
    with pytest.raises(ConfigError) as err:
        TRUTH.loss_curve(np.array([1e-3, -1e-3]), 0)
    assert err.value.field == "lrs"
    with pytest.raises(ConfigError) as err:
        TRUTH.loss_curve(lrs_of("constant"), 0, steps=[0])
    assert err.value.field == "steps"


def _observe(law: MultiPowerLaw, names: list[str], every: int = 30, until: float = 1.0):
    lrs = [lrs_of(n) for n in names]
    W = [infer_warmup_steps(lr) for lr in lrs]
    steps = [np.arange(every, int(T * until) + 1, every) for _ in names]
    losses = [law.loss_curve(lr, w, steps=s) for lr, w, s in zip(lrs, W, steps)]
    return steps, losses, lrs, W


def test_fit_recovers_the_parameters_from_three_noiseless_runs_and_predicts_an_unseen_schedule():
    fitted = fit(*_observe(TRUTH, ["constant", "nanogpt_cosine", "wsd_sqrt"]))
    assert fitted.form is TRUTH.form
    for name in ("L0", "A", "alpha", "B", "C", "beta", "gamma"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUTH, name), rel=1e-4), name
    unseen = lrs_of("linear_to_zero")
    W = infer_warmup_steps(unseen)
    # Noiseless data from the law itself: anything above float round-off would be a fitting failure.
    assert abs(fitted.final_loss(unseen, W) - TRUTH.final_loss(unseen, W)) < 1e-6


def test_fit_from_noisy_runs_predicts_an_unseen_schedule_within_the_papers_error():
    rng = np.random.default_rng(1)
    steps, losses, lrs, W = _observe(TRUTH, ["constant", "nanogpt_cosine", "wsd_sqrt"], every=60)
    noisy = [y + rng.normal(0.0, 0.0015, len(y)) for y in losses]  # our default seed noise
    fitted = fit(steps, noisy, lrs, W)
    unseen = lrs_of("linear_to_zero")
    w = infer_warmup_steps(unseen)
    # 0.004 nats is the paper's mean absolute error on unseen schedules with real runs; a fit to the law
    # plus white noise must do at least as well.
    assert abs(fitted.final_loss(unseen, w) - TRUTH.final_loss(unseen, w)) < 0.004


def test_fit_from_a_prefix_predicts_the_final_loss_of_the_same_schedule():
    # What the `predicted` rung metric does: half of a cosine run seen, its end predicted.
    steps, losses, lrs, W = _observe(TRUTH, ["nanogpt_cosine"], until=0.5)
    fitted = fit(steps[0], losses[0], lrs[0], W[0])
    assert fitted.final_loss(lrs[0], W[0]) == pytest.approx(TRUTH.final_loss(lrs[0], W[0]), abs=1e-5)
    assert predict_final_loss(steps[0], losses[0], lrs[0]) == pytest.approx(TRUTH.final_loss(lrs[0], W[0]), abs=1e-5)


def test_a_prior_rescues_an_early_noisy_prefix():
    # A quarter of a cosine run, with seed noise: the data alone leave the shape parameters loose. An
    # imperfect prior (as if fitted on other runs: every shape parameter off) pulled in gently fixes that.
    rng = np.random.default_rng(2)
    lrs = lrs_of("nanogpt_cosine")
    W = infer_warmup_steps(lrs)
    steps = np.arange(50, T // 4 + 1, 50)
    truth_final = TRUTH.final_loss(lrs, W)
    prior = MultiPowerLaw(**{**TRUTH.to_dict(), "L0": 3.1, "alpha": 0.55, "C": TRUTH.C * 1.5, "beta": 0.65})
    errors = {0.0: [], 0.01: []}
    for _ in range(3):
        noisy = TRUTH.loss_curve(lrs, W, steps=steps) + rng.normal(0.0, 0.0015, len(steps))
        for strength in errors:
            predicted = predict_final_loss(steps, noisy, lrs, prior=prior, prior_strength=strength)
            errors[strength].append(abs(predicted - truth_final))
    assert abs(prior.final_loss(lrs, W) - truth_final) > 0.05  # the prior alone is far off
    # Measured: ~0.02 with the prior, ~0.2 (one prefix off by 0.4) without: 25 % of a run is early.
    assert np.mean(errors[0.01]) < 0.03 and np.mean(errors[0.0]) > 3 * np.mean(errors[0.01])


def test_prefix_without_any_decay_keeps_the_decay_prior_and_fits_the_power_law():
    # The stable phase of WSD says nothing about B, C, beta, gamma: they come from init, the rest is fitted.
    steps, losses, lrs, W = _observe(TRUTH, ["wsd_sqrt"], until=0.6)
    prior = MultiPowerLaw(**{**TRUTH.to_dict(), "L0": 2.0, "A": 1.0, "alpha": 0.3})
    fitted = fit(steps[0], losses[0], lrs[0], W[0], init=prior)
    assert (fitted.B, fitted.C, fitted.beta, fitted.gamma) == (prior.B, prior.C, prior.beta, prior.gamma)
    assert fitted.final_loss(lrs[0], W[0]) == pytest.approx(TRUTH.final_loss(lrs[0], W[0]), abs=1e-5)


def test_fit_skips_points_before_any_lr_was_applied():
    lrs = lrs_of("wsd_sqrt")  # warmup from LR 0: after step 1 nothing has been learned yet
    W = infer_warmup_steps(lrs)
    steps = np.concatenate([[1], np.arange(30, T + 1, 30)])
    losses = TRUTH.loss_curve(lrs, W, steps=steps)
    losses[0] = 10.8  # what a real run reports there; the law says +infinity
    fitted = fit(steps, losses, lrs, W, init=TRUTH)
    assert fitted.final_loss(lrs, W) == pytest.approx(TRUTH.final_loss(lrs, W), abs=1e-6)


def test_fit_refuses_bad_input():
    lr = lrs_of("constant")
    with pytest.raises(ConfigError) as err:
        fit([10, 20], [3.0, 2.9], lr, 0)
    assert err.value.field == "losses"
    with pytest.raises(ConfigError) as err:
        fit([10, 20, 30], [3.0, math.nan, 2.8], lr, 0)
    assert err.value.field == "losses"
    with pytest.raises(ConfigError) as err:
        fit([10, 20, 30], [3.0, 2.9, 2.8], lr, 0, fixed=["B"])
    assert err.value.field == "init"
    with pytest.raises(ConfigError) as err:
        fit([10, 20, 30], [3.0, 2.9, 2.8], lr, 0, prior_strength=0.1)
    assert err.value.field == "init"
    with pytest.raises(ConfigError) as err:
        fit([10, 20, 30], [3.0, 2.9, 2.8], lr, 0, init=TRUTH, prior_strength=-1.0)
    assert err.value.field == "prior_strength"
