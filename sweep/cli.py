"""The `sweep` console script.

Every subcommand lives in its own module under `sweep.commands` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking the parsed
args and returning an exit code). Bad input anywhere below raises `ConfigError`, which becomes one line on
stderr and exit code 2, before anything is created.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from search_spaces.errors import ConfigError
import sweep.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Find which learning-rate schedule shape wins for GPT pretraining, across seeds.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(sweep.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sweep.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as err:
        print(f"sweep: error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
