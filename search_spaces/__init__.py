"""Learning-rate schedule shapes as data, named presets and search spaces. Pure Python + numpy.

The LR at step ``s`` (0..T-1) of a T-step run is ``peak_lr * schedule.multiplier(s, T)``; see
`search_spaces.base` for the step convention.  YAML ``schedule:`` sections take three forms::

    schedule: {preset: wsd_sqrt, cooldown_frac: 0.2}
    schedule: {warmup_frac: 0.02, warmup_curve: linear, hold_frac: 0.7, shape: cosine, floor: 0.1}
    schedule: {segments: [{duration: 0.02, end: 1.0, curve: linear}, {duration: 0.98, end: 0.1, curve: cosine}]}

Modules: `curves` (interpolation curves), `segments` (multi-phase schedules), `shapes` (warmup/hold/decay
shape), `presets` (named formulas), `spaces` (search spaces for Optuna), `parse` (`schedule_from_dict`).
"""

from search_spaces.base import Schedule
from search_spaces.curves import CURVES
from search_spaces.errors import ConfigError
from search_spaces.parse import schedule_from_dict
from search_spaces.presets import PresetSchedule, get_preset, list_presets, preset_spec
from search_spaces.segments import Segment, Segments
from search_spaces.shapes import DECAY_SHAPES, WARMUP_CURVES, Shape
from search_spaces.spaces import SearchSpace, get_search_space, list_search_spaces

__all__ = [
    "CURVES",
    "ConfigError",
    "DECAY_SHAPES",
    "PresetSchedule",
    "Schedule",
    "SearchSpace",
    "Segment",
    "Segments",
    "Shape",
    "WARMUP_CURVES",
    "get_preset",
    "get_search_space",
    "list_presets",
    "list_search_spaces",
    "preset_spec",
    "schedule_from_dict",
]
