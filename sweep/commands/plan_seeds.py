"""``sweep plan-seeds``: how many seeds a paired comparison needs to resolve a schedule effect.

    sweep plan-seeds --effect 0.002 --std 0.0014 [--alpha 0.01] [--power 0.8] [--comparisons 40]
    sweep plan-seeds --effect 0.002 --from-sweep demo [--storage ./sweeps] [--tracking-uri URI]

Prints power against the number of seeds (exact noncentral t, two-sided paired t-test) and the answer.
``--std`` is the standard deviation of the *paired per-seed differences* (see `sweep.stats.planning`).
``--from-sweep`` measures it on a finished sweep's baseline groups instead: the std of paired differences
between two baselines that share seeds when there are two, else sqrt(2) x the pooled within-group std of
final val loss (the independent-seeds bound); ``--effect`` then defaults to the sweep's `verdict.effect`.
``--comparisons M`` plans for a verdict tested in a family of M comparisons (a report's shapes x baselines),
at alpha / M per comparison (`sweep.stats.planning.family_alpha`); with ``--from-sweep`` it defaults to the
family that sweep's report tests.
"""

from __future__ import annotations

import argparse
import math

from search_spaces.errors import ConfigError

# Mirrors sweep.stats.planning's defaults (checked by a test); importing it here would pull scipy into every
# `sweep` invocation, since the CLI imports all command modules to build its parser.
DEFAULT_ALPHA, DEFAULT_POWER, MAX_SEEDS = 0.01, 0.8, 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan-seeds", help="seeds needed for a paired comparison to detect an effect",
        description="How many seeds a paired comparison (two-sided paired t-test) needs to detect an effect "
                    "in final loss, from the exact noncentral-t power.",
    )
    parser.add_argument("--effect", type=float, default=None,
                        help="smallest difference in final loss worth detecting, in nats (e.g. 0.002); with "
                             "--from-sweep, default: the sweep's verdict.effect")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--std", type=float, default=None,
                        help="std of the paired per-seed differences of final loss, in nats (e.g. 0.0014); "
                             "sqrt(2) x one group's seed std if seeds were independent")
    source.add_argument("--from-sweep", metavar="NAME", default=None,
                        help="measure the std on this finished sweep's baseline groups (read from MLflow)")
    parser.add_argument("--storage", default=None, help="with --from-sweep: the sweep's storage (default ./sweeps)")
    parser.add_argument("--tracking-uri", default=None,
                        help="with --from-sweep: read this MLflow store instead of the one in sweep.yaml")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"test level (default {DEFAULT_ALPHA})")
    parser.add_argument("--power", type=float, default=DEFAULT_POWER, help=f"target power (default {DEFAULT_POWER})")
    parser.add_argument("--comparisons", type=int, default=None,
                        help="size of the family the verdict is tested in (default 1; with --from-sweep: the "
                             "sweep's shapes x baselines plus baseline pairs)")
    parser.add_argument("--correction", default=None,
                        help="holm, bonferroni, fdr_bh or none (default holm; with --from-sweep: the sweep's)")
    parser.add_argument("--max-seeds", type=int, default=MAX_SEEDS,
                        help=f"give up past this many (default {MAX_SEEDS})")
    parser.set_defaults(func=run)


MAX_RATIO = 1e6  # effect / std: beyond it the power is 1 at 2 seeds and no longer computable


def run(args: argparse.Namespace) -> int:
    from search_spaces.validation import check_int, check_number
    from sweep.stats.planning import family_alpha, plan_seeds
    from sweep.stats.verdicts import check_correction

    # Validate every option first, naming it the way the user typed it.
    for option, value in (("--effect", args.effect), ("--std", args.std)):
        if value is not None:
            check_number(value, option, lo=0.0, lo_open=True)
    for option, value in (("--alpha", args.alpha), ("--power", args.power)):
        check_number(value, option, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_int(args.max_seeds, "--max-seeds", minimum=2)
    if args.comparisons is not None:
        check_int(args.comparisons, "--comparisons", minimum=1)
    if args.correction is not None:
        check_correction(args.correction, "--correction")
    if args.from_sweep is None and (args.storage is not None or args.tracking_uri is not None):
        raise ConfigError("--storage" if args.storage is not None else "--tracking-uri", "only with --from-sweep")
    effect, std = args.effect, args.std
    comparisons, correction = args.comparisons or 1, args.correction or "holm"
    if args.from_sweep is not None:
        effect, std, family = _from_sweep(args)
        comparisons = args.comparisons or family[0]
        correction = args.correction or family[1]
    elif effect is None:
        raise ConfigError("--effect", "required (the smallest difference in final loss worth detecting, in nats)")
    ratio = effect / std
    if not math.isfinite(ratio) or ratio > MAX_RATIO:
        # The t distribution's tail is not computable there (power came out NaN) and 2 seeds resolve any effect
        # far above the noise: such a ratio is a typo.
        raise ConfigError("--effect", f"effect / std = {ratio:g} (effect {effect:g}, std {std:g}): expected at most "
                                      f"{MAX_RATIO:g}")
    level = family_alpha(args.alpha, comparisons, correction)
    plan = plan_seeds(effect, std, level, args.power, args.max_seeds)
    family = (f", in a family of {comparisons} comparisons ({correction}): {plan.alpha:.3g} per comparison"
              if comparisons > 1 and correction != "none" else "")
    print(f"paired two-sided t-test, effect {plan.effect:g} nats, std of paired differences {plan.std:g} "
          f"(effect/std = {plan.effect / plan.std:.3g}), alpha {args.alpha:g}{family}")
    print(f"{'seeds':>6}  {'power':>6}")
    for n, power in plan.rows:
        mark = "  <- needed" if n == plan.required else ""
        print(f"{n:>6}  {power:>6.3f}{mark}")
    if plan.required is None:
        print(f"more than {args.max_seeds} seeds needed for power {plan.power:g}")
        return 1
    print(f"{plan.required} seeds needed for power {plan.power:g} at alpha {plan.alpha:.3g} per comparison")
    return 0


def _from_sweep(args: argparse.Namespace) -> tuple[float, float, tuple[int, str]]:
    """(effect, std, (family size, correction)) with the std measured on the sweep's finished baselines;
    prints what was measured."""
    from sweep.analysis.noise import planning_inputs
    from sweep.analysis.read import quiet_store_logs

    quiet_store_logs()
    found = planning_inputs(args.from_sweep, args.storage, args.tracking_uri, args.effect)
    noise = found.noise
    print(f"measured on sweep {args.from_sweep!r}, baselines {', '.join(noise.groups)}:")
    print(f"  pooled within-group std of final val_loss: {noise.within_std:.5f} nats ({noise.within_df} df)")
    if noise.paired_std is not None:
        print(f"  std of paired differences between baselines: {noise.paired_std:.5f} nats ({noise.paired_df} df)")
    print(f"  planning with {found.std:.5f} nats: {found.std_source}")
    return found.effect, found.std, found.family
