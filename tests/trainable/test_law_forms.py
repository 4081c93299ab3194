"""The law's two forms against the authors' own numbers.

The presets' parameters were fitted with the authors' reference code, whose form counts the warmup inside
S1 and the loss-drop sum. For two of their 24,000-step schedules that form, fed their parameters, gives
the final losses below (computed from the reference formula), within 0.011 nats of the authors' real
runs at 25M and 100M and 0.023 at 400M. The paper's printed form, fed the same parameters, is 0.11-0.16
nats lower: the level is what the code form fixes.

What neither form fixes: the cosine-vs-WSD gap. Both forms predict 0.049 / 0.055 / 0.057 nats (25M /
100M / 400M) where the real runs differ by 0.028 / 0.028 / 0.017, so a simulator on these presets
exaggerates schedule differences 1.8-3.3x whichever form it uses. The test below pins that down, so that a
change to the law that closes the gap has to say so.

And why the paper form stays the default: the code form charges a warmup from ~0 about B x peak LR for
good, which the authors' runs (all with one warmup) absorbed into their fit, and charges a schedule with
no warmup nothing, so it ranks schedules with different warmups wrongly.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainable.loss_law import LawForm, get_law

STEPS, WARMUP, PEAK, END = 24_000, 2_160, 3e-4, 3e-5
# final loss (cosine, WSD): the reference form's prediction from the published parameters, and the real runs
REFERENCE = {"mpl_25m": (3.3153, 3.2669), "mpl_100m": (2.9901, 2.9360), "mpl_400m": (2.7572, 2.7005)}
REAL = {"mpl_25m": (3.3044, 3.2766), "mpl_100m": (2.9791, 2.9514), "mpl_400m": (2.7396, 2.7222)}


def cosine() -> np.ndarray:
    """Linear warmup from 0 over 2,160 steps, then a half cosine from 3e-4 down to 3e-5 at the last step."""
    lrs = np.empty(STEPS)
    lrs[:WARMUP] = np.linspace(0.0, PEAK, WARMUP)
    s = np.arange(WARMUP, STEPS)
    lrs[WARMUP:] = END + 0.5 * (PEAK - END) * (1.0 + np.cos(np.pi * (s - WARMUP) / (STEPS - WARMUP)))
    return lrs


def wsd() -> np.ndarray:
    """The same warmup, 3e-4 held to step 19,999, then an exponential (geometric) decay to 3e-5."""
    lrs = np.empty(STEPS)
    lrs[:WARMUP] = np.linspace(0.0, PEAK, WARMUP)
    lrs[WARMUP:20_000] = PEAK
    s = np.arange(20_000, STEPS)
    lrs[20_000:] = PEAK ** ((STEPS - s) / 4000) * END ** ((s - 20_000) / 4000)
    return lrs


@pytest.mark.parametrize("name", list(REFERENCE))
def test_the_code_form_reproduces_the_authors_predictions(name):
    law = get_law(name).in_form("code")
    predicted = (law.final_loss(cosine(), WARMUP), law.final_loss(wsd(), WARMUP))
    assert predicted == pytest.approx(REFERENCE[name], abs=0.005)
    assert predicted == pytest.approx(REAL[name], abs=0.025)  # and so near the real runs


@pytest.mark.parametrize("name", list(REFERENCE))
def test_both_forms_exaggerate_the_real_cosine_wsd_gap(name):
    real_gap = REAL[name][0] - REAL[name][1]
    for form in LawForm:
        law = get_law(name).in_form(form)
        gap = law.final_loss(cosine(), WARMUP) - law.final_loss(wsd(), WARMUP)
        assert 1.6 * real_gap < gap < 3.5 * real_gap, form  # measured 1.8x (25M), 2.0x (100M), 3.3x (400M)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_the_paper_form_with_the_same_parameters_is_a_tenth_of_a_nat_too_low(name):
    paper = get_law(name)
    assert paper.form is LawForm.PAPER  # the default, for the reason below
    for lrs, reference in zip((cosine(), wsd()), REFERENCE[name]):
        assert reference - 0.17 < paper.final_loss(lrs, WARMUP) < reference - 0.1


def test_the_code_form_mis_ranks_schedules_whose_warmups_differ():
    from search_spaces import get_preset

    const, linear = (PEAK * get_preset(n).multipliers(STEPS) for n in ("constant", "linear_to_zero"))
    gap = {form: get_law("mpl_25m").in_form(form).final_loss(const, 0)
           - get_law("mpl_25m").in_form(form).final_loss(linear, int(np.argmax(linear))) for form in LawForm}
    assert gap[LawForm.PAPER] > 0.02  # holding the peak to the end loses to a decay, as in real runs
    assert gap[LawForm.CODE] < -0.05  # measured -0.086: constant skips the warmup's ~0.11-nat charge
