"""Search spaces driven by real Optuna studies (random and TPE) and by numpy sampling."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import optuna
import pytest

from search_spaces import ConfigError, Schedule, Segments, Shape, get_search_space, list_search_spaces, schedule_from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The documented, stable parameter names of each space (Optuna and MLflow see these).
DOCUMENTED = {
    "wsd": {"warmup_frac", "cooldown_frac", "shape", "tail_exponent", "floor"},
    "full": {"warmup_frac", "warmup_curve", "hold_share", "shape", "tail_exponent", "floor"},
    "two_stage": {"warmup_frac", "hold_share", "split", "mid_level", "stage1_curve", "stage2_curve", "floor"},
}


def test_names_and_docs():
    assert set(list_search_spaces()) >= {"wsd", "full"}
    for name in list_search_spaces():
        space = get_search_space(name)
        assert space.description
        assert set(space.params) == DOCUMENTED[name]
    import search_spaces.spaces as module
    for name, params in DOCUMENTED.items():
        assert f"``{name}``" in module.__doc__
        for param in params:
            assert f"``{param}``" in module.__doc__, (name, param)


def test_unknown_space():
    with pytest.raises(ConfigError) as info:
        get_search_space("everything")
    assert info.value.field == "search_space" and "wsd" in info.value.message


def check(schedule: Schedule, params: dict) -> None:
    """Every suggestion validates, evaluates sanely and round-trips through its dict."""
    assert schedule_from_dict(schedule.to_dict()) == schedule
    m = schedule.multipliers(64)
    assert np.all((m >= 0) & (m <= 1)) and np.all(np.isfinite(m))
    if isinstance(schedule, Shape):
        assert schedule.hold_frac >= schedule.warmup_frac
        assert ("tail_exponent" in params) == (schedule.shape == "polynomial")
    else:
        assert isinstance(schedule, Segments)


@pytest.mark.parametrize("sampler", ["random", "tpe"])
@pytest.mark.parametrize("name", ["wsd", "full", "two_stage"])
def test_optuna_study(name, sampler):
    space = get_search_space(name)
    make = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[sampler]
    study = optuna.create_study(sampler=make(seed=0))
    seen_params: set[str] = set()

    def objective(trial: optuna.Trial) -> float:
        schedule = space.suggest(trial)
        check(schedule, trial.params)
        seen_params.update(trial.params)
        # An objective that depends on the shape, so TPE has something to model.
        return float(np.mean(schedule.multipliers(50)))

    study.optimize(objective, n_trials=200)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert seen_params == DOCUMENTED[name]


@pytest.mark.parametrize("name", ["wsd", "full", "two_stage"])
def test_sample(name):
    space = get_search_space(name)
    rng = np.random.default_rng(1)
    drawn = [space.sample(rng) for _ in range(300)]
    for schedule in drawn:
        check(schedule, schedule.flat_params() if isinstance(schedule, Shape) else {})
    assert len({repr(s.to_dict()) for s in drawn}) == len(drawn)  # actually random
    again = np.random.default_rng(1)
    assert space.sample(again) == drawn[0]  # and reproducible from the seed


def test_bottom_layer_stays_light():
    """search_spaces is pure Python + numpy: importing it must not pull in torch, ray, optuna or mlflow."""
    code = ("import sys, search_spaces, search_spaces.spaces; "
            "heavy = [m for m in ('torch', 'ray', 'optuna', 'mlflow', 'trainable', 'sweep') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
