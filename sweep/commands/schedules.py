"""``sweep schedules``: list the schedule presets and search spaces, or plot schedules.

    sweep schedules list
    sweep schedules plot nanogpt_cosine wsd_sqrt my_shape.yaml --steps 2000 -o schedules.png

A NAME is a preset name, a YAML/JSON file holding a schedule dict (optionally under a ``schedule:`` key), or
an inline YAML mapping such as ``'{preset: wsd_sqrt, cooldown_frac: 0.1}'``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


from search_spaces import (Schedule, get_preset, get_search_space, list_presets, list_search_spaces, preset_spec,
                           schedule_from_dict)
from search_spaces.errors import ConfigError
from trainable.yaml_input import parse_yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schedules", help="list or plot LR schedule presets and search spaces")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="table of presets and search spaces")
    listing.add_argument("-v", "--verbose", action="store_true",
                         help="also list each preset's arguments and each space's parameters")
    listing.set_defaults(func=run_list)
    plot = actions.add_parser("plot", help="overlay plot of schedules as a PNG")
    plot.add_argument("names", nargs="+", metavar="NAME", help="preset name, YAML/JSON schedule file, or inline mapping '{preset: wsd_sqrt, floor: 0.1}'")
    plot.add_argument("--steps", type=int, default=1000, help="horizon T to plot (default 1000)")
    plot.add_argument("-o", "--output", default="schedules.png", help="PNG path (default schedules.png)")
    plot.set_defaults(func=run_plot)


MAX_PLOT_STEPS = 10_000_000  # a plot of a horizon longer than any run, still a few hundred MB at most


def run_list(args: argparse.Namespace) -> int:
    rows = [("preset", name, preset_spec(name).description) for name in list_presets()]
    rows += [("space", name, get_search_space(name).description) for name in list_search_spaces()]
    width = max(len(name) for _, name, _ in rows)
    print(f"{'KIND':<7} {'NAME':<{width}}  DESCRIPTION")
    for kind, name, description in rows:
        print(f"{kind:<7} {name:<{width}}  {description}")
        if getattr(args, "verbose", False):
            for line in _details(kind, name):
                print(f"{'':<7} {'':<{width}}    {line}")
    return 0


def _details(kind: str, name: str) -> list[str]:
    """Argument (preset) or parameter (space) lines for ``list --verbose``."""
    if kind == "preset":
        spec = preset_spec(name)
        lines = [f"{p.name} = {'(from T)' if p.default is None else p.default}: {p.doc}" for p in spec.params]
        return lines + ([f"source: {spec.source}"] if spec.source else [])
    return [f"{param}: {doc}" for param, doc in get_search_space(name).params.items()]


def load_schedule(name: str) -> Schedule:
    """A preset by name, an inline mapping (``'{preset: wsd_sqrt, floor: 0.1}'``) or a schedule file.

    Raises `ConfigError` naming `name` when it is none of these or does not hold a valid schedule.
    """
    if name in list_presets():
        return get_preset(name)
    if name.lstrip().startswith("{"):
        data = parse_yaml(name, "the inline mapping", name)
        try:
            return schedule_from_dict(data)
        except ConfigError as err:
            raise err.prefixed(f"{name}: schedule") from None
    path = Path(name)
    if not path.is_file():
        raise ConfigError(name, f"not a preset name nor a schedule file; presets: {', '.join(list_presets())}")
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix == ".json" else parse_yaml(raw, str(path), name)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(name, f"cannot read a schedule from it: {err}".splitlines()[0]) from None
    if isinstance(data, dict) and set(data) == {"schedule"}:
        data = data["schedule"]
    try:
        return schedule_from_dict(data)
    except ConfigError as err:
        raise err.prefixed(f"{name}: schedule") from None


def run_plot(args: argparse.Namespace) -> int:
    # Imported here so `sweep schedules list` (and every other command) does not pay for matplotlib.
    from sweep.core.schedule_plot import plot_schedules

    if not 1 <= args.steps <= MAX_PLOT_STEPS:
        # The plot evaluates every step: 2**31 steps asked numpy for 16 GiB.
        raise ConfigError("--steps", f"must be between 1 and {MAX_PLOT_STEPS}, got {args.steps}")
    out = Path(args.output)
    if out.is_dir():
        raise ConfigError("--output", f"{out} is a folder; give a .png file path")
    base = out.absolute().parent
    while not base.exists():  # missing folders are made by the plot; the nearest existing one must take them
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError("--output", f"cannot write {out} ({base} is not a writable folder)")
    named = {name: load_schedule(name) for name in args.names}  # all validated before anything is written
    try:
        path = plot_schedules(named, args.steps, args.output)
    except OSError as err:  # e.g. a file system that refuses the write itself (/proc)
        raise ConfigError("--output", f"cannot write {out}: {err.strerror or err}") from None
    print(path)
    return 0
