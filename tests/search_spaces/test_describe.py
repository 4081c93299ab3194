"""Schedules in words (`Schedule.describe`): what every label, table and legend shows the user."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces import get_search_space, list_presets, schedule_from_dict


@pytest.mark.parametrize("schedule, words", [
    ({"warmup_frac": 0.02, "warmup_curve": "linear", "hold_frac": 0.72, "shape": "cosine", "floor": 0.05},
     "wsd: warmup 2% lin, hold 70%, cos -> 0.05"),
    ({"hold_frac": 0.8, "shape": "polynomial", "tail_exponent": 2.0, "floor": 0.0}, "wsd: hold 80%, poly^2 -> 0"),
    ({"warmup_frac": 0.005, "warmup_curve": "sqrt", "hold_frac": 0.005, "shape": "sqrt", "floor": 0.1},
     "wsd: warmup 0.5% sqrt, 1-sqrt -> 0.1"),
    ({"warmup_frac": 0.1, "hold_frac": 1.0}, "wsd: warmup 10% lin, hold 90%, no decay"),
    ({"segments": [{"duration": 0.02, "end": 1.0}, {"duration": 0.68, "end": 1.0},
                   {"duration": 0.2, "end": 0.3825, "curve": "cosine"},
                   {"duration": 0.1, "end": 0.05, "curve": "polynomial", "exponent": 2.0}]},
     "seg: from 0, lin 2% -> 1, hold 68%, cos 20% -> 0.383, poly^2 10% -> 0.05"),
    ({"preset": "wsd_sqrt"}, "wsd_sqrt"),
    ({"preset": "wsd_sqrt", "cooldown_frac": 0.25}, "wsd_sqrt (cooldown_frac 0.25)"),
])
def test_describe(schedule, words):
    assert schedule_from_dict(schedule).describe() == words


def test_every_preset_and_drawn_shape_has_a_one_line_description():
    rng = np.random.default_rng(0)
    schedules = [schedule_from_dict({"preset": p}) for p in list_presets()]
    schedules += [get_search_space(name).sample(rng) for name in ("full", "wsd") for _ in range(50)]
    words = [s.describe() for s in schedules]
    assert all("\n" not in w and 0 < len(w) <= 80 for w in words), max(words, key=len)
    # Two different drawn shapes get two different descriptions (what the user tells them apart by).
    drawn = [(s.to_dict(), w) for s, w in zip(schedules, words) if "preset" not in s.to_dict()]
    assert len({w for _, w in drawn}) == len({str(d) for d, _ in drawn})
