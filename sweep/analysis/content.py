"""What a sweep report says, as data: the ranking, the paired verdicts against baselines, and whether the
seeds could resolve the differences seen. `sweep.analysis.report` renders it; a confirmation stage can reuse it.

Every function takes `GroupOutcome`s (`sweep.analysis.read`), so any source of groups works. Only finished
groups are ranked or compared: a pruned or diverged group's last loss comes from fewer steps (or is a
penalty) and would flatter or punish its shape.

All the comparisons of one report are one family (`sweep.stats.verdicts.family_verdicts`): a verdict is called on
its family-adjusted p-value, so a report of 150 comparisons holds a false "better" or "worse" with
probability at most alpha when no shape differs. Before any test, the inputs are checked for what makes a
test meaningless (`input_warnings`): seeds that ended bit-identically (a trainer that ignores its seed) and
groups of different schedules that ended bit-identically on every seed (a trainer that ignores the schedule);
comparisons that involve such a group get no verdict, and the report says why.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sweep.analysis.read import GroupOutcome
from sweep.core.outcome import rank_groups
from sweep.core.status import FINISHED
from sweep.stats.planning import (DEFAULT_POWER, NoiseEstimate, detectable_effect, family_alpha, measure_noise,
                                  required_seeds)
from sweep.stats.verdicts import (CALLED, CORRECTIONS, DEFAULT_ALPHA, DEFAULT_CORRECTION, NO_DIFFERENCE,
                                  PairedComparison, UnmatchedSeedsError, family_verdicts, paired_comparison,
                                  without_verdict)

# Finals printed with at most this many decimals are taken as rounded (`metric_resolution`).
_MAX_PRINTED_DECIMALS = 8



@dataclass(frozen=True)
class ComparisonRow:
    """One shape against one baseline: the paired comparison, or why there is none (`note`)."""

    candidate: GroupOutcome
    baseline: GroupOutcome
    comparison: PairedComparison | None
    note: str = ""


def _finals(group: GroupOutcome, metric: str) -> Mapping[str, float]:
    return group.finals(metric)


def metric_resolution(groups: Sequence[GroupOutcome], metric: str = "val_loss") -> float | None:
    """The rounding step of the finished groups' final values: 10^-d for the fewest decimals d that write every
    value exactly (a script that prints 3 decimals gives 0.001), None when they look continuous (a trainer's
    float32 losses never fit in `_MAX_PRINTED_DECIMALS` decimals). Needs at least four values to judge."""
    values = [v for g in groups if g.status == FINISHED for v in _finals(g, metric).values() if math.isfinite(v)]
    if len(values) < 4:
        return None
    for d in range(_MAX_PRINTED_DECIMALS + 1):
        scaled = [v * 10.0**d for v in values]
        # float64 carries ~16 digits: a value written with d decimals is within ~1e-15 (relative) of an integer
        # once scaled; a continuous value lands that close by chance with probability ~1e-12 per value.
        if all(abs(x - round(x)) <= 1e-12 * max(1.0, abs(x)) for x in scaled):
            return 10.0**-d
    return None


def _same_schedule(a: GroupOutcome, b: GroupOutcome, total_steps: int | None) -> bool:
    if a.schedule is None or b.schedule is None:
        return False
    if total_steps:
        return bool(np.array_equal(a.schedule.multipliers(int(total_steps)), b.schedule.multipliers(int(total_steps))))
    return a.schedule.to_dict() == b.schedule.to_dict()


def input_warnings(groups: Sequence[GroupOutcome], total_steps: int | None = None,
                   metric: str = "val_loss") -> dict[str, str]:
    """Finished groups whose numbers show that the trainer ignored an input: group id -> the reason in words.

    - what the script's own reports said (`GroupOutcome.notices`): it never read its seed or the schedule;

    - seed ignored: two or more seeds ended at exactly the same value (different seeds draw different
      initialisations and data orders; bit-identical finals mean the seed never reached the trainer);
    - schedule ignored: two groups with different schedules ended at exactly the same value on every seed.
    """
    finished = [g for g in groups if g.status == FINISHED and _finals(g, metric)]
    out: dict[str, str] = {g.group_id: "; ".join(g.notices.values()) for g in finished if g.notices}
    for g in finished:
        values = list(_finals(g, metric).values())
        if len(values) >= 2 and len(set(values)) == 1 and g.group_id not in out:
            out[g.group_id] = (f"its {len(values)} seeds ended at exactly the same {metric} ({values[0]:.6g}): "
                               "the trainer ignores its seed")
    by_values: dict[tuple, list[GroupOutcome]] = {}
    for g in finished:
        finals = _finals(g, metric)
        by_values.setdefault(tuple(sorted(finals.items())), []).append(g)
    for same in by_values.values():
        for g in same:
            twins = [o.name for o in same if o is not g and not _same_schedule(o, g, total_steps)]
            if twins and g.group_id not in out:
                out[g.group_id] = (f"ended exactly like {', '.join(twins)} on every seed although its schedule differs: "
                                   "the trainer ignores the schedule")
    return out


def compare_with_baselines(groups: Sequence[GroupOutcome], alpha: float = DEFAULT_ALPHA,
                           metric: str = "val_loss", correction: str = DEFAULT_CORRECTION,
                           resolution: float | None = None, total_steps: int | None = None,
                           warnings: Mapping[str, str] | None = None) -> list[ComparisonRow]:
    """Every finished searched shape against every baseline, then every baseline against the ones before it,
    with every verdict called on its p-value adjusted over all of these comparisons (`correction`).

    Shapes come in ranking order. A baseline that did not finish yields a row with a note instead of a
    comparison, as does a pair without the same seeds. A pair with a group of `input_warnings` keeps its
    numbers but gets no verdict. `resolution`: the metric's rounding step (None: inferred from the values);
    `warnings`: `input_warnings` of these groups when the caller has them already (None: computed here).
    """
    ranked, _ = rank_groups(groups)
    baselines = [g for g in groups if g.is_baseline]
    shapes = [r.group for r in ranked if not r.group.is_baseline]
    pairs = [(s, b) for s in shapes for b in baselines]
    pairs += [(b, a) for i, a in enumerate(baselines) for b in baselines[i + 1:] if b.status == FINISHED]
    suspect = input_warnings(groups, total_steps, metric) if warnings is None else warnings
    if resolution is None:
        resolution = metric_resolution(groups, metric)
    rows = []
    for cand, base in pairs:
        if base.status != FINISHED:
            rows.append(ComparisonRow(cand, base, None, f"baseline {base.status}: nothing to compare with"))
            continue
        try:
            comparison = paired_comparison(_finals(cand, metric), _finals(base, metric), names=(cand.name, base.name),
                                           alpha=alpha, resolution=resolution)
        except (UnmatchedSeedsError, ValueError) as err:
            rows.append(ComparisonRow(cand, base, None, str(err)))
            continue
        flagged = [g for g in (cand, base) if g.group_id in suspect]
        if flagged:
            comparison = without_verdict(comparison, f"{flagged[0].name} {suspect[flagged[0].group_id]}")
        rows.append(ComparisonRow(cand, base, comparison))
    tested = [r.comparison for r in rows if r.comparison is not None]
    adjusted = iter(family_verdicts(tested, alpha, correction))
    return [ComparisonRow(r.candidate, r.baseline, next(adjusted), r.note) if r.comparison is not None else r
            for r in rows]


def baseline_noise(groups: Sequence[GroupOutcome]) -> NoiseEstimate:
    """Seed noise measured on the finished baseline groups (pooled within-group std, paired std)."""
    finals = {g.name: g.final_val_loss for g in groups if g.is_baseline and g.status == FINISHED}
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
    paired_std: float | None  # median std of paired differences over the tested comparisons
    detectable: float | None  # smallest difference n seeds detect with `power` at that std, in this family
    n_comparisons: int  # comparisons with numbers (tested or not)
    n_called: int  # comparisons called "better" or "worse"
    unresolved: tuple[Unresolved, ...]
    family_size: int = 1  # comparisons tested together (those with a p-value)
    correction: str = "none"
    untested: tuple[str, ...] = ()  # why the others could not be tested, one entry per comparison

    @property
    def test_alpha(self) -> float:
        """The per-comparison level the power figures assume (`sweep.stats.planning.family_alpha`)."""
        return family_alpha(self.alpha, self.family_size, self.correction)


def resolution(rows: Sequence[ComparisonRow], alpha: float = DEFAULT_ALPHA,
               power: float = DEFAULT_POWER) -> Resolution | None:
    """What the comparisons' seeds can resolve; None without any comparison.

    Each "no detectable difference" is judged at its own paired std: it is *unresolved* when its observed
    difference is below the smallest one its seeds detect with `power` at the per-comparison level its family
    imposes (then the verdict says little).
    """
    done = [r.comparison for r in rows if r.comparison is not None]
    if not done:
        return None
    tested = [c for c in done if c.testable]
    family_size = tested[0].family_size if tested else 0
    correction = tested[0].correction if tested else "none"
    level = family_alpha(alpha, max(family_size, 1), correction)
    n = min(c.n for c in tested) if tested else min(c.n for c in done)
    stds = [c.std_diff for c in tested]
    std = statistics.median(stds) if stds else None
    unresolved = []
    for c in tested:
        if c.verdict != NO_DIFFERENCE:
            continue
        smallest = detectable_effect(c.n, c.std_diff, level, power)
        if abs(c.mean_diff) < smallest:
            needed = required_seeds(abs(c.mean_diff), c.std_diff, level, power) if c.mean_diff != 0.0 else None
            unresolved.append(Unresolved(c, smallest, needed))
    return Resolution(
        n_seeds=n, alpha=alpha, power=power, paired_std=std,
        detectable=detectable_effect(n, std, level, power) if std is not None else None,
        n_comparisons=len(done), n_called=sum(c.verdict in CALLED for c in done),
        unresolved=tuple(unresolved), family_size=family_size, correction=correction,
        untested=tuple(c.reason for c in done if not c.testable),
    )


def family_text(res: Resolution | None, ranked_shapes: int) -> list[str]:
    """What family the verdicts belong to, what the correction guarantees, and the selection caveat."""
    if res is None or res.family_size == 0:
        return []
    what = CORRECTIONS.get(res.correction, res.correction)
    if res.correction == "none":
        guarantee = (f"each comparison is tested at alpha {res.alpha:g} on its own: with {res.family_size} comparisons, "
                     f"about {res.family_size * res.alpha:.2g} false calls are expected when no shape differs")
    elif res.correction == "fdr_bh":
        guarantee = (f"among the verdicts called, the expected share of false ones is at most {res.alpha:g}")
    else:
        guarantee = (f"when no shape truly differs, the chance that this report holds any false \"better\" or "
                     f"\"worse\" is at most {res.alpha:g}")
    lines = [f"The {res.family_size} tested comparisons of this report are one family, adjusted by {what} at "
             f"alpha {res.alpha:g}: {guarantee}. A verdict is called only on its adjusted p; each interval is at the "
             f"level that matches its test, so it excludes 0 exactly when a verdict is called."]
    if ranked_shapes > 1:
        lines.append(f"Selection: the ranking and these verdicts are exploratory. The {ranked_shapes} shapes were "
                     "chosen and ranked on these same seeds, so the best of them looks better than it is (the "
                     "winner's curse). `sweep confirm` re-runs the finalists and baselines on fresh seeds, "
                     "disjoint from these, and gives the unbiased answer.")
    return lines


def resolution_text(res: Resolution | None) -> list[str]:
    """The report's plain-words paragraph on whether the seeds could resolve the differences seen."""
    if res is None:
        return ["No paired comparison could be made (no finished shape and finished baseline on the same seeds)."]
    if res.family_size == 0:
        reasons = sorted(set(res.untested))
        return [f"No comparison could be tested, so no verdict is called: {'; '.join(reasons)}."]
    lines = [
        f"With {res.n_seeds} seeds, a paired t-test at the per-comparison level this family imposes "
        f"({res.test_alpha:.2g}) detects a difference with {res.power:.0%} power only from about "
        f"{res.detectable:.4f} nats on (at the median std of paired differences seen, {res.paired_std:.4f} nats)."]
    if res.untested:
        lines.append(f"{len(res.untested)} of {res.n_comparisons} comparisons could not be tested (see their "
                     "verdict column) and are not part of the family.")
    if res.unresolved:
        sizes = sorted(abs(u.comparison.mean_diff) for u in res.unresolved)
        needs = [u.needed for u in res.unresolved]
        known = sorted(n for n in needs if n is not None)
        need = (f"{known[0]}" if known and known[0] == known[-1] else f"{known[0]} to {known[-1]}") if known else ""
        more = "more than 10000" if None in needs else ""
        need = " or ".join(x for x in (need, more) if x)
        lines.append(
            f"{len(res.unresolved)} of {res.family_size} tested comparisons found \"{NO_DIFFERENCE}\" for differences "
            f"({sizes[0]:.4f} to {sizes[-1]:.4f} nats) smaller than what {res.n_seeds} seeds can resolve at their "
            f"own paired std: those verdicts say little about whether the shapes differ. Resolving differences of "
            f"that size would take {need} seeds (`sweep plan-seeds --effect X --std Y --comparisons "
            f"{res.family_size}`)."
            + (f" With {res.n_seeds} seeds each std rests on {res.n_seeds - 1} degree(s) of freedom: these seed "
               "counts are rough; measure the std on more seeds (`sweep plan-seeds --from-sweep`)."
               if res.n_seeds <= 3 else ""))
    else:
        lines.append(f"Every \"{NO_DIFFERENCE}\" concerns a difference the {res.n_seeds} seeds could have resolved.")
    return lines
