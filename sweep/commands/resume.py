"""``sweep resume NAME [--storage PATH]``: continue an interrupted sweep from its storage.

    sweep resume demo                          # the sweep in ./sweeps/demo
    sweep resume gpt2-124m --storage /shared/sweeps

Finished groups are kept; unfinished and errored groups continue from their seeds' last checkpoints under
the same trial ids; the Optuna searcher and ASHA's rungs are restored. The config is the one the sweep was
started with (`<storage>/<NAME>/sweep.yaml`).
"""

from __future__ import annotations

import argparse

from sweep.commands.run import execute


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("resume", help="continue an interrupted sweep")
    parser.add_argument("name", help="the sweep name")
    parser.add_argument("--storage", default="./sweeps",
                        help="the storage the sweep was run with (folder or s3://, gs://; default ./sweeps)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Ray's, Tune's and the workers' own output (by default in <sweep folder>/sweep.log)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sweep.config import parse_storage
    from sweep.config import load_saved_config

    storage = parse_storage(args.storage, "--storage")
    # The storage given here wins over the saved one: the sweep folder may have been moved or mounted elsewhere.
    cfg = replace(load_saved_config(storage, args.name), storage=storage)
    return execute(cfg, "resume", verbose=args.verbose)
