"""What a sweep report says, as data: the ranking, the paired verdicts against baselines, and whether the
seeds could resolve the differences seen. `sweep.report` renders it; a confirmation stage can reuse it.

Every function takes `GroupRecord`s (`sweep.report_data`), so any source of groups works. Only finished
groups are ranked or compared: a pruned or diverged group's last loss comes from fewer steps (or is a
penalty) and would flatter or punish its shape.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from sweep.progress import DIVERGED, ERROR, FINISHED, PRUNED, RUNNING
from sweep.report_data import GroupRecord
from sweep.seed_planner import DEFAULT_POWER, NoiseEstimate, detectable_effect, measure_noise, required_seeds
from sweep.stats import SeedStats
from sweep.verdicts import DEFAULT_ALPHA, NO_DIFFERENCE, PairedComparison, UnmatchedSeedsError, paired_comparison

_UNRANKED_ORDER = (PRUNED, DIVERGED, ERROR, RUNNING)


@dataclass(frozen=True)
class RankedGroup:
    """A finished group's place in the ranking with its final val_loss and val_bpb over seeds."""

    rank: int
    group: GroupRecord
    loss: SeedStats
    bpb: SeedStats | None


def rank_groups(groups: Sequence[GroupRecord]) -> tuple[list[RankedGroup], list[GroupRecord]]:
    """Finished groups ranked by mean final val_loss (ties by group id), and the rest, never ranked.

    The unranked come pruned first, then diverged, errored and still running, each by group id.
    """
    scored = []
    for g in groups:
        loss = g.outcome.stats("val_loss") if g.status == FINISHED else None
        if loss is not None:
            scored.append((loss.mean, g.group_id, g, loss))
    scored.sort(key=lambda item: (item[0], item[1]))
    ranked = [RankedGroup(rank=i, group=g, loss=loss, bpb=g.outcome.stats("val_bpb"))
              for i, (_, _, g, loss) in enumerate(scored, start=1)]
    ranked_ids = {r.group.group_id for r in ranked}
    order = {s: i for i, s in enumerate(_UNRANKED_ORDER)}
    unranked = sorted((g for g in groups if g.group_id not in ranked_ids),
                      key=lambda g: (order.get(g.status, len(order)), g.group_id))
    return ranked, unranked


@dataclass(frozen=True)
class ComparisonRow:
    """One shape against one baseline: the paired comparison, or why there is none (`note`)."""

    candidate: GroupRecord
    baseline: GroupRecord
    comparison: PairedComparison | None
    note: str = ""


def compare_with_baselines(groups: Sequence[GroupRecord], alpha: float = DEFAULT_ALPHA,
                           metric: str = "val_loss") -> list[ComparisonRow]:
    """Every finished searched shape against every baseline, then every baseline against the ones before it.

    Shapes come in ranking order. A baseline that did not finish yields a row with a note instead of a
    comparison, as does a pair without the same seeds.
    """
    ranked, _ = rank_groups(groups)
    baselines = [g for g in groups if g.is_baseline]
    shapes = [r.group for r in ranked if not r.group.is_baseline]
    pairs = [(s, b) for s in shapes for b in baselines]
    pairs += [(b, a) for i, a in enumerate(baselines) for b in baselines[i + 1:] if b.status == FINISHED]
    rows = []
    for cand, base in pairs:
        if base.status != FINISHED:
            rows.append(ComparisonRow(cand, base, None, f"baseline {base.status}: nothing to compare with"))
            continue
        finals = [g.outcome.final_val_loss if metric == "val_loss" else g.outcome.final_val_bpb for g in (cand, base)]
        try:
            comparison = paired_comparison(finals[0], finals[1], names=(cand.name, base.name), alpha=alpha)
        except (UnmatchedSeedsError, ValueError) as err:
            rows.append(ComparisonRow(cand, base, None, str(err)))
            continue
        rows.append(ComparisonRow(cand, base, comparison))
    return rows


def baseline_noise(groups: Sequence[GroupRecord]) -> NoiseEstimate:
    """Seed noise measured on the finished baseline groups (pooled within-group std, paired std)."""
    finals = {g.name: g.outcome.final_val_loss for g in groups if g.is_baseline and g.status == FINISHED}
    return measure_noise(finals)


@dataclass(frozen=True)
class Unresolved:
    """A "no detectable difference" whose difference is below what its seeds can resolve."""

    comparison: PairedComparison
    detectable: float  # the smallest difference its n pairs detect with the target power, at its own std
    needed: int | None  # seeds its observed difference would need (None: more than the planner searches)


@dataclass(frozen=True)
class Resolution:
    """Could the seeds resolve the differences seen? The numbers behind the report's sentences."""

    n_seeds: int
    alpha: float
    power: float
    paired_std: float | None  # median std of paired differences over the comparisons
    detectable: float | None  # smallest difference n seeds detect with `power` at that std
    n_comparisons: int
    n_called: int  # comparisons with a verdict other than "no detectable difference"
    unresolved: tuple[Unresolved, ...]


def resolution(rows: Sequence[ComparisonRow], alpha: float = DEFAULT_ALPHA,
               power: float = DEFAULT_POWER) -> Resolution | None:
    """What the comparisons' seeds can resolve; None without any comparison.

    Each "no detectable difference" is judged at its own paired std: it is *unresolved* when its observed
    difference is below the smallest one its seeds detect with `power` (then the verdict says little).
    """
    done = [r.comparison for r in rows if r.comparison is not None]
    if not done:
        return None
    n = min(c.n for c in done)
    stds = [c.std_diff for c in done if math.isfinite(c.std_diff) and c.std_diff > 0.0]
    std = statistics.median(stds) if stds else None
    unresolved = []
    for c in done:
        if c.verdict != NO_DIFFERENCE or c.n < 2 or not (math.isfinite(c.std_diff) and c.std_diff > 0.0):
            continue
        smallest = detectable_effect(c.n, c.std_diff, alpha, power)
        if abs(c.mean_diff) < smallest:
            needed = required_seeds(abs(c.mean_diff), c.std_diff, alpha, power) if c.mean_diff != 0.0 else None
            unresolved.append(Unresolved(c, smallest, needed))
    return Resolution(
        n_seeds=n, alpha=alpha, power=power, paired_std=std,
        detectable=detectable_effect(n, std, alpha, power) if std is not None and n >= 2 else None,
        n_comparisons=len(done), n_called=sum(c.verdict != NO_DIFFERENCE for c in done),
        unresolved=tuple(unresolved),
    )


def resolution_text(res: Resolution | None) -> list[str]:
    """The report's plain-words paragraph on whether the seeds could resolve the differences seen."""
    if res is None:
        return ["No paired comparison could be made (no finished shape and finished baseline on the same seeds)."]
    if res.n_seeds < 2:
        return [f"With {res.n_seeds} seed per group no paired test is possible: every verdict is "
                f"\"{NO_DIFFERENCE}\". Plan the seeds with `sweep plan-seeds`."]
    if res.paired_std is None:
        return ["Every paired difference was identical across seeds (std 0): the verdicts are exact."]
    lines = [
        f"With {res.n_seeds} seeds, a paired t-test at alpha {res.alpha:g} detects a difference with "
        f"{res.power:.0%} power only from about {res.detectable:.4f} nats on (at the median std of paired "
        f"differences seen, {res.paired_std:.4f} nats)."]
    if res.unresolved:
        sizes = sorted(abs(u.comparison.mean_diff) for u in res.unresolved)
        needs = [u.needed for u in res.unresolved]
        known = sorted(n for n in needs if n is not None)
        need = (f"{known[0]}" if known and known[0] == known[-1] else f"{known[0]} to {known[-1]}") if known else ""
        more = "more than 10000" if None in needs else ""
        need = " or ".join(x for x in (need, more) if x)
        lines.append(
            f"{len(res.unresolved)} of {res.n_comparisons} comparisons found \"{NO_DIFFERENCE}\" for differences "
            f"({sizes[0]:.4f} to {sizes[-1]:.4f} nats) smaller than what {res.n_seeds} seeds can resolve at their "
            f"own paired std: those verdicts say little about whether the shapes differ. Resolving differences of "
            f"that size would take {need} seeds (`sweep plan-seeds --effect X --std Y`)."
            + (f" With {res.n_seeds} seeds each std rests on {res.n_seeds - 1} degree(s) of freedom: these seed "
               "counts are rough; measure the std on more seeds (`sweep plan-seeds --from-sweep`)."
               if res.n_seeds <= 3 else ""))
    else:
        lines.append(f"Every \"{NO_DIFFERENCE}\" concerns a difference the {res.n_seeds} seeds could have resolved.")
    if res.n_comparisons > 1:
        lines.append(f"{res.n_comparisons} comparisons at alpha {res.alpha:g}: about "
                     f"{res.n_comparisons * res.alpha:.2g} would be called by chance alone if no shape differed "
                     f"({res.n_called} were called).")
    return lines
