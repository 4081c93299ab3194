"""`schedule_from_dict`: what a YAML ``schedule:`` section holds -> a `Schedule`.

Three forms, told apart by their keys::

    schedule: {preset: wsd_sqrt, cooldown_frac: 0.2}                         # a named preset + args
    schedule: {warmup_frac: 0.02, warmup_curve: linear, hold_frac: 0.7,
               shape: cosine, floor: 0.1}                                     # a Shape
    schedule: {start: 0.0, segments: [{duration: 0.02, end: 1.0, curve: linear}, ...]}   # Segments

Errors name the field relative to the section (``hold_frac``, ``segments[2].duration``); callers nest them
with ``err.prefixed("schedule")``.
"""

from __future__ import annotations

from typing import Any

from search_spaces import validation
from search_spaces.base import Schedule
from search_spaces.errors import ConfigError
from search_spaces.presets import get_preset
from search_spaces.segments import Segments
from search_spaces.shapes import Shape


def schedule_from_dict(d: Any) -> Schedule:
    """Parse a schedule section; `ConfigError` on anything malformed. Inverse of ``Schedule.to_dict``."""
    d = validation.check_mapping(d, "")
    if "preset" in d:
        args = dict(d)
        name = args.pop("preset")
        if not isinstance(name, str):
            raise ConfigError("preset", f"must be a preset name, got {type(name).__name__} {name!r}")
        return get_preset(name, **args)
    if "segments" in d:
        return Segments.from_dict(d)
    return Shape.from_dict(d)
