"""Error rates of the project's verdicts, measured by simulation through its own report and confirmation code.

    python benchmarks/verdict_error_rates.py [--reports 2000] [--out benchmarks/verdict_error_rates.json]

Every number comes from the code a user runs: `sweep.analysis.content.compare_with_baselines` (the sweep report's
verdicts: ranking, family, correction) and `sweep.confirm.select_finalists` + `sweep.confirm.confirm_seeds` +
`sweep.confirm.report.delta_points` (the confirmation's). Only the groups' per-seed final losses are made here,
by the loss-curve simulator (`trainable.simulator`: the mpl_25m law at T = 24,000 steps, noise_std 0.0015,
seed offset 0.001, so the std of a paired per-seed difference is sqrt(2) x 0.0015 = 0.0021 nats). Each repeat
draws new noise (`noise_seed`); the shapes stay the same.

Worlds:
- null: searched groups and baseline groups, all linear_to_zero's shape (2 % warmup, linear decay) with floors
  1e-7 apart around `F0` (see below): distinct LR sequences, hence independent noise, with true final losses
  equal to within 1e-6 nats. No shape truly differs.
- mixed: the null world with some of the searched shapes replaced by the same shape with floors near
  `BETTER_FLOOR` (0.3, close to the law's best floor), truly better than every baseline by `EFFECT` = 2 x the
  paired seed std: F0 is the floor above 0.3 whose noiseless final loss is exactly that much higher, found
  by root finding on the law (which rises monotonically in the floor there).

Figures, each over `--reports` repeats, with Wilson 95 % intervals for the Monte Carlo error:
- family-wise error rate (null): the share of reports with at least one "better" or "worse"; false calls per
  report; for each correction (none = the per-comparison rule of earlier versions, bonferroni, holm, fdr_bh);
- false discovery rate and power (mixed): the mean share of false calls among the calls made, and the share
  of the true effects found;
- selection (null): the sweep's best shape called "better" than some baseline in the sweep's own report; and
  the confirmation's verdicts for that finalist at 1x on 5 seeds, on fresh seeds (the default) and on the
  sweep's own seeds reused, with the old rule (95 % interval, no correction) and the new one (Holm at 0.01);
- power against the planner: one shape truly better by EFFECT against one baseline, 5 seeds, alpha 0.01, and
  in a family of `--shapes` x 1 comparisons: the share called "better" next to `sweep.stats.planning`'s exact
  power at the family's per-comparison level.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scipy import optimize  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from search_spaces import schedule_from_dict  # noqa: E402
from sweep.analysis.content import compare_with_baselines  # noqa: E402
from sweep.confirm.plan import confirm_seeds, select_finalists  # noqa: E402
from sweep.confirm.report import delta_points  # noqa: E402
from sweep.core.outcome import GroupOutcome  # noqa: E402
from sweep.core.status import FINISHED  # noqa: E402
from sweep.stats.planning import family_alpha, paired_power  # noqa: E402
from sweep.stats.verdicts import CALLED, CORRECTIONS, family_verdicts  # noqa: E402
from trainable.simulator import SimulatorConfig, noiseless_final_loss, simulated_losses  # noqa: E402

T = 24_000
NOISE_STD = 0.0015
PAIRED_STD = math.sqrt(2.0) * NOISE_STD
EFFECT = 2.0 * PAIRED_STD
ALPHA = 0.01
FLOOR_STEP = 1e-7  # null shapes' floors this far apart: their true losses differ by < 1e-6 nats
BETTER_FLOOR = 0.3


def sim_config(noise_seed: int) -> SimulatorConfig:
    return SimulatorConfig(law="mpl_25m", total_steps=T, eval_interval=T, noise_std=NOISE_STD,
                           seed_offset_std=0.001, noise_seed=noise_seed)


def linear_decay(floor: float):
    """Linear-to-zero's own shape (warmup 2 %, then linear decay) ending at `floor` instead of 0."""
    return schedule_from_dict({"warmup_frac": 0.02, "hold_frac": 0.02, "shape": "linear", "floor": float(floor)})


@lru_cache(maxsize=1)
def null_floor() -> float:
    """The floor F0 > BETTER_FLOOR whose noiseless final loss is exactly EFFECT above BETTER_FLOOR's."""
    cfg = sim_config(0)
    better = noiseless_final_loss(linear_decay(BETTER_FLOOR), cfg)
    gap = lambda f: noiseless_final_loss(linear_decay(f), cfg) - better - EFFECT  # noqa: E731
    return float(optimize.brentq(gap, BETTER_FLOOR, 0.9, xtol=1e-10))


def finals(cfg: SimulatorConfig, schedule, seeds: Sequence[int]) -> dict[str, float]:
    """Per-seed final val_loss of one group, as the simulated trial reports it."""
    return {str(s): float(simulated_losses(cfg, schedule, s, [T])[0][0]) for s in seeds}


@dataclass(frozen=True)
class World:
    """Schedules of a simulated sweep: searched shapes (with which ones are truly better) and baselines."""

    shapes: tuple
    true_better: tuple[bool, ...]
    baselines: tuple

    @staticmethod
    def build(n_shapes: int, n_baselines: int, n_true: int = 0) -> "World":
        f0 = null_floor()
        base = tuple(linear_decay(f0 + FLOOR_STEP * i) for i in range(n_baselines))
        shapes = [linear_decay(f0 + FLOOR_STEP * (n_baselines + i)) for i in range(n_shapes - n_true)]
        shapes += [linear_decay(BETTER_FLOOR + FLOOR_STEP * i) for i in range(n_true)]  # truly better by EFFECT
        return World(tuple(shapes), tuple([False] * (n_shapes - n_true) + [True] * n_true), base)


def sweep_records(world: World, cfg: SimulatorConfig, seeds: Sequence[int]) -> list[GroupOutcome]:
    """The groups of one simulated sweep as `sweep report` reads them back (every group finished)."""
    out = []
    for i, s in enumerate(world.baselines):
        out.append(_record(f"b{i}", f"base{i}", finals(cfg, s, seeds), s))
    for i, s in enumerate(world.shapes):
        out.append(_record(f"s{i}", "search", finals(cfg, s, seeds), s))
    return out


def _record(gid: str, label: str, values: dict[str, float], schedule) -> GroupOutcome:
    return GroupOutcome(gid, label, FINISHED, T, values, {}, run_id="", seed_runs={k: "" for k in values},
                        schedule=schedule)


def _calls(rows) -> list:
    return [r.comparison for r in rows if r.comparison is not None and r.comparison.verdict in CALLED]


def report_verdicts(groups: Sequence[GroupOutcome], corrections: Sequence[str]) -> dict[str, list]:
    """The comparisons a sweep report would call under each correction, the calls only.

    `compare_with_baselines` once (it makes the paired comparisons, the family and the checks), then
    `family_verdicts` again for each other correction: the same result as calling the report once per
    correction (tests/sweep/stats/test_verdict_error_rates.py checks it), at a quarter of the cost."""
    rows = compare_with_baselines(groups, ALPHA, correction=corrections[0], total_steps=T)
    tested = [r.comparison for r in rows if r.comparison is not None]
    out = {corrections[0]: [c for c in tested if c.verdict in CALLED]}
    for c in corrections[1:]:
        out[c] = [x for x in family_verdicts(tested, ALPHA, c) if x.verdict in CALLED]
    return out


def rate(count: int, n: int) -> dict:
    lo, hi = proportion_confint(count, n, alpha=0.05, method="wilson")
    return {"rate": count / n, "ci95": [float(lo), float(hi)], "count": count, "n": n}


# ---- the measurements ---------------------------------------------------------------------------------------
def null_family(reports: int, n_shapes: int = 30, n_baselines: int = 5, n_seeds: int = 3,
                corrections: Sequence[str] = tuple(CORRECTIONS), first_noise_seed: int = 1) -> dict:
    """Family-wise error of the sweep report in a world where no shape differs, per correction."""
    world = World.build(n_shapes, n_baselines)
    seeds = list(range(n_seeds))
    any_false = {c: 0 for c in corrections}
    false_calls = {c: 0 for c in corrections}
    for r in range(reports):
        groups = sweep_records(world, sim_config(first_noise_seed + r), seeds)
        for c, called in report_verdicts(groups, corrections).items():
            any_false[c] += bool(called)
            false_calls[c] += len(called)
    m = n_shapes * n_baselines + n_baselines * (n_baselines - 1) // 2
    return {"comparisons": m, "shapes": n_shapes, "baselines": n_baselines, "seeds": n_seeds,
            "fwer": {c: rate(any_false[c], reports) for c in corrections},
            "false_calls_per_report": {c: false_calls[c] / reports for c in corrections}}


def group_of(name: str) -> str:
    """The group id in a report's group name, ``<shape in words> (<group id>)``."""
    return name.rsplit("(", 1)[1].rstrip(")")


def mixed_family(reports: int, n_shapes: int = 30, n_true: int = 6, n_baselines: int = 5, n_seeds: int = 5,
                 corrections: Sequence[str] = tuple(CORRECTIONS), first_noise_seed: int = 100_000) -> dict:
    """False discovery rate and power when `n_true` shapes are truly better than every baseline by EFFECT."""
    world = World.build(n_shapes, n_baselines, n_true)
    true_ids = {f"s{i}" for i, t in enumerate(world.true_better) if t}
    seeds = list(range(n_seeds))
    fdp = {c: 0.0 for c in corrections}
    found = {c: 0 for c in corrections}
    any_false = {c: 0 for c in corrections}
    n_true_pairs = n_true * n_baselines
    for r in range(reports):
        groups = sweep_records(world, sim_config(first_noise_seed + r), seeds)
        for c, called in report_verdicts(groups, corrections).items():
            true_calls = [x for x in called if group_of(x.candidate) in true_ids and x.verdict == "better"]
            false = len(called) - len(true_calls)
            fdp[c] += false / max(len(called), 1)
            any_false[c] += false > 0
            found[c] += len(true_calls)
    return {"shapes": n_shapes, "true_shapes": n_true, "baselines": n_baselines, "seeds": n_seeds,
            "fdr": {c: fdp[c] / reports for c in corrections},
            "fwer": {c: rate(any_false[c], reports) for c in corrections},
            "power": {c: rate(found[c], reports * n_true_pairs) for c in corrections}}


def _sweep_groups(world: World, records: Sequence[GroupOutcome]) -> list[GroupOutcome]:
    out = []
    for g in records:
        baseline = g.label if g.is_baseline else None
        out.append(replace(g, config={"baseline": baseline, "schedule": {}, "seeds": list(g.final_val_loss)}))
    return out


def selection(reports: int, n_shapes: int = 30, n_baselines: int = 5, n_seeds: int = 3, confirm_n: int = 5,
              first_noise_seed: int = 200_000) -> dict:
    """The sweep's best null shape, judged in the sweep's own report and in a confirmation at 1x."""
    world = World.build(n_shapes, n_baselines)
    schedules = {f"b{i}": s for i, s in enumerate(world.baselines)} | {f"s{i}": s for i, s in enumerate(world.shapes)}
    sweep_seeds = list(range(n_seeds))
    variants = {  # name -> (reuse the sweep's seeds, alpha, correction)
        "fresh seeds, holm 0.01 (default)": (False, ALPHA, "holm"),
        "reused seeds, holm 0.01": (True, ALPHA, "holm"),
        "reused seeds, 95 % CI, no correction (before)": (True, 0.05, "none"),
        "fresh seeds, 95 % CI, no correction": (False, 0.05, "none"),
    }
    in_sweep = {"none (before)": 0, "holm (now)": 0}
    better = {v: 0 for v in variants}
    better_first = {v: 0 for v in variants}
    for r in range(reports):
        cfg = sim_config(first_noise_seed + r)
        records = sweep_records(world, cfg, sweep_seeds)
        finalist = select_finalists(_sweep_groups(world, records), 1)[0]
        calls = report_verdicts(records, ("none", "holm"))
        for key, corr in (("none (before)", "none"), ("holm (now)", "holm")):
            in_sweep[key] += any(group_of(c.candidate) == finalist.group_id and c.verdict == "better"
                                 for c in calls[corr])
        for name, (reuse, alpha, corr) in variants.items():
            seeds = confirm_seeds(sweep_seeds, confirm_n, reuse_sweep_seeds=reuse)
            stage = [_stage_group(finalist.group_id, None, finals(cfg, schedules[finalist.group_id], seeds))]
            stage += [_stage_group(f"b{i}", f"base{i}", finals(cfg, schedules[f"b{i}"], seeds)) for i in range(n_baselines)]
            points = delta_points({"1x": stage}, {"1x": 1.0}, {"1x": T}, [finalist.group_id],
                                  [f"base{i}" for i in range(n_baselines)], alpha=alpha, correction=corr)
            better[name] += any(p.verdict == "better" for p in points)
            better_first[name] += any(p.verdict == "better" for p in points if p.baseline == "base0")
    return {"shapes": n_shapes, "baselines": n_baselines, "sweep_seeds": n_seeds, "confirm_seeds": confirm_n,
            "winner_called_better_in_sweep_report": {k: rate(v, reports) for k, v in in_sweep.items()},
            "confirm_better_than_any_baseline": {k: rate(v, reports) for k, v in better.items()},
            "confirm_better_than_one_baseline": {k: rate(v, reports) for k, v in better_first.items()}}


def _stage_group(gid: str, baseline: str | None, values: dict[str, float]) -> GroupOutcome:
    config = {"baseline": baseline, "source_group": gid if baseline is None else None, "schedule": {},
              "seeds": [int(s) for s in values]}
    return GroupOutcome(f"c-{gid}", baseline or "search", FINISHED, T, values, {}, config=config)


def power_vs_planner(reports: int, n_seeds: int = 5, family_shapes: int = 30, first_noise_seed: int = 300_000) -> dict:
    """A shape truly better by EFFECT = 2 x the paired std: how often the report calls it, next to the planner."""
    f0 = null_floor()
    out = {}
    for shapes in (1, family_shapes):
        # One truly better shape; the others (if any) are null. One baseline: a family of `shapes` comparisons.
        world = World(tuple([linear_decay(BETTER_FLOOR)] + [linear_decay(f0 + FLOOR_STEP * (i + 1)) for i in range(shapes - 1)]),
                      tuple([True] + [False] * (shapes - 1)), (linear_decay(f0),))
        found = 0
        for r in range(reports):
            groups = sweep_records(world, sim_config(first_noise_seed + r), list(range(n_seeds)))
            rows = compare_with_baselines(groups, ALPHA, correction="holm", total_steps=T)
            found += any(group_of(c.candidate) == "s0" and c.verdict == "better" for c in _calls(rows))
        level = family_alpha(ALPHA, shapes, "holm")
        out[f"family of {shapes}"] = {**rate(found, reports), "planner": paired_power(n_seeds, EFFECT, PAIRED_STD, level),
                                      "per_comparison_alpha": level}
    return {"seeds": n_seeds, "effect": EFFECT, "paired_std": PAIRED_STD, "results": out}


# ---- command line ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reports", type=int, default=2000, help="simulated reports per measurement")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    # statsmodels' Holm runs gc.collect() on every call; freezing what exists now keeps that cheap.
    gc.freeze()
    started = time.time()
    figures = {
        "command": "python benchmarks/verdict_error_rates.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "null_floor": null_floor(),
        "null": null_family(args.reports),
        "mixed": mixed_family(args.reports),
        "selection": selection(args.reports),
        "power": power_vs_planner(args.reports),
    }
    figures["seconds"] = round(time.time() - started, 1)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
