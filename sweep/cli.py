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
from typing import NoReturn

from search_spaces.errors import ConfigError
import sweep.commands


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error form: one line `sweep: error: FIELD: ...` and exit 2 (argparse prints
    its usage block first, under another prefix); the usage is for `-h`."""

    def error(self, message: str) -> NoReturn:
        print(f"sweep: error: {one_line(_field_first(message))} (see '{self.prog} -h')", file=sys.stderr)
        raise SystemExit(2)


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (a key or value from a bad input may hold
    them): every error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _field_first(message: str) -> str:
    """argparse's message with the argument it is about first, as every other error of the CLI has it."""
    if message.startswith("argument "):  # "argument --top: invalid int value: 'x'"
        return message[len("argument "):]
    if message.startswith("the following arguments are required: "):
        names = message[len("the following arguments are required: "):]
        return f"{names}: required"
    if message.startswith("unrecognized arguments: "):
        return f"{message[len('unrecognized arguments: '):]}: unrecognized argument"
    return message


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sweep",
        description="Find which learning-rate schedule shape wins for GPT pretraining, across seeds.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(sweep.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sweep.commands.{info.name}")
        before = set(subparsers.choices)
        module.register(subparsers)
        for name in set(subparsers.choices) - before:
            _describe(subparsers.choices[name], module.__doc__ or "")
    return parser


def _describe(parser: argparse.ArgumentParser, doc: str) -> None:
    """Give `parser` (and the actions under it, e.g. `data prepare`) its command module's docstring, which
    opens with what the command does and its examples, as the `-h` description where it has none."""
    examples = [line for line in doc.splitlines() if line.strip().startswith("sweep ") and line.startswith("    ")]
    if parser.description is None:
        parser.description = doc.strip()
        parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines
    elif parser.epilog is None and examples:
        parser.epilog = "examples:\n" + "\n".join(examples)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:  # argparse has no public way to list a parser's subcommands
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _describe(sub, doc)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("schedsweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as err:
        print(f"sweep: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
