"""Signs that a script ignored its seed or the schedule (`sweep.core.notices`), the console warning printed once
per group and kind (`SweepProgress`), and the report withholding those groups' verdicts."""

from __future__ import annotations

import io
import dataclasses
from types import SimpleNamespace

from sweep.analysis.content import compare_with_baselines, input_warnings
from sweep.core.notices import SCHEDULE_IGNORED, SEED_IGNORED, TwinCurves, hook_notices, result_notices
from sweep.core.outcome import outcome_from_result
from sweep.stats.verdicts import BETTER, CALLED
from sweep.tracking.progress import SweepProgress

WSD = {"preset": "wsd_sqrt"}
COSINE = {"preset": "nanogpt_cosine"}


def _result(step: int, values: dict, **flags: float) -> dict:
    return {"step": step, "status": "finished" if step == 200 else "running",
            "per_seed": {s: {"step": step, "val_loss": v, "status": "finished" if step == 200 else "running", **flags}
                         for s, v in values.items()}}


def test_flags_from_the_hook_name_what_was_never_read_and_absent_flags_say_nothing() -> None:
    per_seed = {"0": {"step": 50, "seed_read": 0.0, "schedule_read": 1.0}, "1": {"step": 50, "seed_read": 1.0}}
    assert list(hook_notices(per_seed)) == [SEED_IGNORED] and "seed runs 0" in hook_notices(per_seed)[SEED_IGNORED]
    own = hook_notices({"0": {"step": 50, "seed_read": 1.0, "schedule_read": 0.0}})
    assert list(own) == [SCHEDULE_IGNORED] and "hook.lr_multiplier" in own[SCHEDULE_IGNORED]
    # nanoGPT's eval at step 0 may come before its first LR: not yet a sign.
    assert hook_notices({"0": {"step": 0, "seed_read": 1.0, "schedule_read": 0.0}}) == {}
    assert hook_notices({"0": {"step": 50, "val_loss": 2.0}}) == {}  # the built-in trainer: no flags


def test_identical_seeds_after_step_0_are_a_sign_at_step_0_not() -> None:
    assert SEED_IGNORED in result_notices(_result(50, {"0": 2.5, "1": 2.5}))
    assert result_notices(_result(0, {"0": 4.2, "1": 4.2})) == {}  # a script may seed only the data order
    assert result_notices(_result(50, {"0": 2.5, "1": 2.51})) == {}


def test_twin_curves_need_schedules_that_differ_before_the_step() -> None:
    twins = TwinCurves(total_steps=200)
    same_warmup_a = {"warmup_frac": 0.1, "hold_frac": 0.9, "floor": 0.0}
    same_warmup_b = {"warmup_frac": 0.1, "hold_frac": 0.5, "floor": 0.0}
    curve = {"0": {"val_loss": 3.0}, "1": {"val_loss": 3.1}}
    assert twins.add("a", same_warmup_a, 20, curve) == []
    assert twins.add("b", same_warmup_b, 20, curve) == []  # the shapes agree up to step 20: so may the curves
    assert twins.add("a", same_warmup_a, 150, curve) == []
    assert twins.add("b", same_warmup_b, 150, curve) == ["a"]  # they differ from step 100 on
    assert twins.add("c", same_warmup_a, 150, curve) == ["b"]  # the same schedule as a: not evidence against a


def _trial(tid: str, schedule: dict) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"schedule": schedule, "seeds": [0, 1]}, status="RUNNING")


def test_console_warns_once_per_group_and_kind_naming_the_cause() -> None:
    out = io.StringIO()
    progress = SweepProgress(total_steps=200, interval_s=1e9, stream=out)
    a, b = _trial("g-a", WSD), _trial("g-b", COSINE)
    for step in (0, 50, 100):
        for t in (a, b):
            progress.on_trial_result(0, [a, b], t, _result(step, {"0": 3.0 - step / 100, "1": 3.0 - step / 100}))
    lines = [line for line in out.getvalue().splitlines() if "WARNING" in line]
    assert sorted(line.split("WARNING ")[1].split(" ")[0] + " " + line.split("): ")[1].split(":")[0]
                  for line in lines) == ["g-a schedule ignored", "g-a seed ignored",
                                         "g-b schedule ignored", "g-b seed ignored"], lines
    assert all("the report makes no verdict on this group" in line for line in lines)
    assert any("as g-a, whose schedule differs" in line for line in lines)


def test_the_report_makes_no_verdict_on_a_group_whose_script_never_read_the_schedule() -> None:
    base = outcome_from_result("g-base", {"baseline": "wsd_sqrt", "schedule": WSD},
                               _result(200, {"0": 2.50313, "1": 2.52171, "2": 2.51042}, seed_read=1.0, schedule_read=1.0),
                               errored=False, ended=True)
    # Far better on every seed, but the script trained its own schedule: the gap is not the shape's.
    own = outcome_from_result("g-own", {"schedule": COSINE},
                              _result(200, {"0": 2.10137, "1": 2.13071, "2": 2.11029}, seed_read=1.0, schedule_read=0.0),
                              errored=False, ended=True)
    assert list(own.notices) == [SCHEDULE_IGNORED]
    warnings = input_warnings([base, own])
    assert list(warnings) == ["g-own"] and "hook.lr_multiplier" in warnings["g-own"]
    rows = compare_with_baselines([base, own], alpha=0.05)
    assert len(rows) == 1 and rows[0].comparison is not None and rows[0].comparison.verdict not in CALLED
    assert "never called hook.lr_multiplier" in rows[0].comparison.reason
    # The same numbers from a script that did read it: called "better", so it was the notice that held it back.
    honest = dataclasses.replace(own, notices={})
    assert compare_with_baselines([base, honest], alpha=0.05)[0].comparison.verdict == BETTER
