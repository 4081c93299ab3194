"""``sweep plan-seeds``: how many seeds a paired comparison needs to resolve a schedule effect.

    sweep plan-seeds --effect 0.002 --std 0.0014 [--alpha 0.01] [--power 0.8]

Prints power against the number of seeds (exact noncentral t, two-sided paired t-test) and the answer.
``--std`` is the standard deviation of the *paired per-seed differences* (see `sweep.seed_planner`).
"""

from __future__ import annotations

import argparse

from search_spaces.errors import ConfigError

# Mirrors sweep.seed_planner's defaults (checked by a test); importing it here would pull scipy into every
# `sweep` invocation, since the CLI imports all command modules to build its parser.
DEFAULT_ALPHA, DEFAULT_POWER, MAX_SEEDS = 0.01, 0.8, 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan-seeds", help="seeds needed for a paired comparison to detect an effect",
        description="How many seeds a paired comparison (two-sided paired t-test) needs to detect an effect "
                    "in final loss, from the exact noncentral-t power.",
    )
    parser.add_argument("--effect", type=float, required=True,
                        help="smallest difference in final loss worth detecting, in nats (e.g. 0.002)")
    parser.add_argument("--std", type=float, required=True,
                        help="std of the paired per-seed differences of final loss, in nats (e.g. 0.0014); "
                             "sqrt(2) x one group's seed std if seeds were independent")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"test level (default {DEFAULT_ALPHA})")
    parser.add_argument("--power", type=float, default=DEFAULT_POWER, help=f"target power (default {DEFAULT_POWER})")
    parser.add_argument("--max-seeds", type=int, default=MAX_SEEDS,
                        help=f"give up past this many (default {MAX_SEEDS})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sweep.seed_planner import plan_seeds

    # Validate every option first, naming it the way the user typed it.
    for option, value in (("--effect", args.effect), ("--std", args.std)):
        if not value > 0 or value == float("inf"):
            raise ConfigError(option, f"must be a finite number > 0, got {value}")
    for option, value in (("--alpha", args.alpha), ("--power", args.power)):
        if not 0.0 < value < 1.0:
            raise ConfigError(option, f"must be strictly between 0 and 1, got {value}")
    if args.max_seeds < 2:
        raise ConfigError("--max-seeds", f"must be >= 2, got {args.max_seeds}")
    plan = plan_seeds(args.effect, args.std, args.alpha, args.power, args.max_seeds)
    print(f"paired two-sided t-test, effect {plan.effect:g} nats, std of paired differences {plan.std:g} "
          f"(effect/std = {plan.effect / plan.std:.3g}), alpha {plan.alpha:g}")
    print(f"{'seeds':>6}  {'power':>6}")
    for n, power in plan.rows:
        mark = "  <- needed" if n == plan.required else ""
        print(f"{n:>6}  {power:>6.3f}{mark}")
    if plan.required is None:
        print(f"more than {args.max_seeds} seeds needed for power {plan.power:g}")
        return 1
    print(f"{plan.required} seeds needed for power {plan.power:g} at alpha {plan.alpha:g}")
    return 0
