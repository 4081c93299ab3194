"""Search efficiency of schedule sweeps on the loss-curve simulator: random search vs TPE + ASHA with each
rung metric (raw, cooldown, predicted), all over seed groups.

    python benchmarks/search_efficiency.py [--space full] [--repeats 8] [--budget 64] [--random-budget 48]
                                           [--out benchmarks/search_efficiency.json]

What runs: the service's own pieces, in this process. Each group is a `sweep.engine.sim_trial.SimulatedGroup` (the
simulated group trial's seeds, `GroupAggregator`, the rung metric); TPE + ASHA sweeps drive the real
`GroupSearcher` (Optuna TPE) and `PersistentASHA` (Ray's ASHA) through the calls Tune makes
(`suggest`, `on_trial_result`, `on_trial_complete`), with `--concurrency` groups in flight advancing one
eval each per round, as equally fast asynchronous trials would. Tune itself (actors, reporting, MLflow) is
left out: on a shared 2-core machine its per-result overhead would make enough repeats impossible, and it
does not change which groups run or are stopped.

Ground truth: the best shape of the space by dense evaluation of the noiseless law
(`trainable.simulator.noiseless_final_loss`) on `--dense` random shapes, then Nelder-Mead on the
continuous parameters of the 8 best (categorical ones held).

Figures (per method, over repeats, each repeat with its own noise seed and TPE seed):
- compute to land within 0.003 nats: full-run equivalents spent (steps x seeds run, cooldown-probe steps
  included, / (T x seeds)) when the incumbent (the finished group with the best mean final val loss) first
  has a true final loss within `--tol` of the true best; a sweep that never gets there counts as infinite
  (the median is finite only when most sweeps got there). Random search is also given its budget-free
  expectation, 1 / P(a random shape is within tol), P from the dense sample;
- how often the final pick is within noise of the best (true loss within `--noise-tol` = noise_std);
- Spearman correlation of each rung metric at each rung with the true final loss, over `--corr-shapes`
  random shapes (all seeds of a group, the same rungs the sweeps use).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from scipy.optimize import minimize
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces import get_search_space, schedule_from_dict  # noqa: E402
from sweep.config import SchedulerSection  # noqa: E402
from sweep.core.trial_spec import TrialSpec  # noqa: E402
from sweep.engine.rung_metrics import RUNG_KEY  # noqa: E402
from sweep.engine.scheduler import PersistentASHA  # noqa: E402
from sweep.engine.searcher import METRIC, MODE, GroupSearcher  # noqa: E402
from sweep.engine.sim_trial import SimulatedGroup  # noqa: E402
from trainable.loss_law import get_law, preset_setting  # noqa: E402
from trainable.simulator import SimulatorConfig, noiseless_final_loss  # noqa: E402

METHODS = ("random", "asha_raw", "asha_cooldown", "asha_predicted")


@dataclass
class Setup:
    """The simulated world and the sweep settings every method shares."""

    space_name: str
    sim: dict[str, Any]
    seeds: list[int]
    grace: int
    reduction: float
    cooldown_frac: float

    @property
    def total_steps(self) -> int:
        return int(self.sim["total_steps"])

    def probe_steps(self) -> list[int]:
        return SchedulerSection(grace_period=self.grace, reduction_factor=self.reduction).milestones(self.total_steps)

    def trial_config(self, schedule: dict, metric: str, noise_seed: int) -> dict[str, Any]:
        return {
            "backend": "simulator", "simulator": {**self.sim, "noise_seed": noise_seed}, "schedule": schedule,
            "baseline": None, "seeds": list(self.seeds), "rung_metric": metric, "probe_steps": self.probe_steps(),
            "cooldown_frac": self.cooldown_frac, "divergence_penalty": None,
        }


class _Trial:
    """What Ray's ASHA reads of a trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


@dataclass
class Group:
    """One group in flight: its simulated seeds and its results so far."""

    trial_id: str
    schedule: dict
    sim: SimulatedGroup
    results: Any  # sim.results(), the generator of its group results
    true_final: float = math.nan
    last: dict | None = None


@dataclass
class SweepLog:
    """What one sweep spent and found; `trajectory`: (spend, incumbent's regret) at each finished group."""

    method: str
    spent: float = 0.0  # full-run equivalents so far
    hit_at: float | None = None  # spend when the incumbent first got within tol
    pick_true: float = math.nan
    groups: int = 0
    finished: int = 0
    trajectory: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
def true_best(setup: Setup, n: int, rng: np.random.Generator) -> tuple[float, dict, np.ndarray]:
    """The lowest noiseless final loss of the space (dense random shapes, then Nelder-Mead from the best 8),
    its parameters, and the dense shapes' true final losses."""
    space = get_search_space(setup.space_name)
    cfg = SimulatorConfig(**setup.sim)
    trials = []
    for _ in range(n):
        t = _ParamTrial(rng)
        trials.append((noiseless_final_loss(space.suggest(t), cfg), dict(t.params)))
    trials.sort(key=lambda x: x[0])
    best = trials[0]
    for value, params in trials[:8]:
        floats = {k: v for k, v in params.items() if isinstance(v, float)}
        names = sorted(floats)
        dists = {}
        space.suggest(_Recorder(params, dists))

        def loss(x: np.ndarray) -> float:
            p = dict(params)
            for k, v in zip(names, x):
                lo, hi = dists[k]
                p[k] = float(min(max(v, lo), hi))
            return noiseless_final_loss(space.suggest(optuna.trial.FixedTrial(p)), cfg)

        res = minimize(loss, np.array([floats[k] for k in names]), method="Nelder-Mead",
                       options={"xatol": 1e-4, "fatol": 1e-6, "maxfev": 400})
        if res.fun < best[0]:
            p = dict(params)
            p.update({k: float(min(max(v, dists[k][0]), dists[k][1])) for k, v in zip(names, res.x)})
            best = (float(res.fun), p)
    return best[0], best[1], np.array([t[0] for t in trials])


class _ParamTrial:
    """Random draws like `SearchSpace.sample`, keeping the parameters (for the refinement)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.params = rng, {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        v = float(np.exp(self.rng.uniform(np.log(low), np.log(high)))) if log else float(self.rng.uniform(low, high))
        self.params[name] = v = min(max(v, low), high)
        return v

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = v = choices[int(self.rng.integers(len(choices)))]
        return v


class _Recorder:
    """Replays fixed parameters and records each float's range."""

    def __init__(self, params: dict, ranges: dict):
        self.params, self.ranges = params, ranges

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.ranges[name] = (low, high)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.params[name]


# ---------------------------------------------------------------------------------------------------------
def _compute(group: Group) -> int:
    """Steps the group's seeds have run so far, their cooldown probes' steps included."""
    total = 0
    for per in group.sim.agg.reports.values():
        if per:
            latest = per[max(per)]
            total += int(latest["step"]) + int(latest.get("probe_steps_run", 0))
    return total


def run_sweep(setup: Setup, method: str, budget: int, concurrency: int, repeat: int, best: float, tol: float,
              cache: dict) -> SweepLog:
    """One sweep; returns its spend, when it first got within `tol` of `best`, and its final pick's true loss.

    Calls as Tune makes them: every result goes to the scheduler; unless it says STOP, to the searcher too;
    a group that ended or was stopped then goes to `on_trial_complete` of both with its last result.
    """
    log = SweepLog(method)
    space = get_search_space(setup.space_name)
    full = setup.total_steps * len(setup.seeds)
    metric = "raw" if method == "random" else method.split("_", 1)[1]
    cfg = SimulatorConfig(**setup.sim)
    rng = np.random.default_rng(10_000 + repeat)
    searcher = scheduler = None
    if method != "random":
        searcher = GroupSearcher(space=space, seeds=setup.seeds, baselines=[], budget=budget, seed=repeat)
        state = Path(tempfile.mkdtemp(prefix="asha-")) / "asha_state.json"
        scheduler = PersistentASHA(state_path=str(state), time_attr="step", metric=RUNG_KEY, mode=MODE,
                                   max_t=setup.total_steps + 1, grace_period=setup.grace,
                                   reduction_factor=setup.reduction)
    running: list[Group] = []
    ended_compute = 0
    incumbent: tuple[float, float] | None = None  # (observed mean final val loss, true final loss)
    started = 0

    def true_final(schedule_dict: dict) -> float:
        key = json.dumps(schedule_dict, sort_keys=True)
        if key not in cache:
            cache[key] = noiseless_final_loss(schedule_from_dict(dict(schedule_dict)), cfg)
        return cache[key]

    def start() -> bool:
        nonlocal started
        if started >= budget:
            return False
        tid = f"r{repeat}t{started}"
        if searcher is None:
            schedule = space.sample(rng).to_dict()
        else:
            suggestion = searcher.suggest(tid)
            if not isinstance(suggestion, dict):
                return False
            schedule = suggestion["schedule"]
            scheduler.on_trial_add(None, _Trial(tid))
        sim = SimulatedGroup(TrialSpec.from_config(setup.trial_config(schedule, metric, noise_seed=repeat)), tid)
        running.append(Group(tid, schedule, sim, sim.results(), true_final=true_final(schedule)))
        started += 1
        return True

    while len(running) < concurrency and start():
        pass
    while running:
        for group in list(running):
            result = next(group.results, None)
            if result is not None:
                group.last = result
                stop = False
                if scheduler is not None:
                    stop = scheduler.on_trial_result(None, _Trial(group.trial_id), result) == "STOP"
                    if not stop:
                        searcher.on_trial_result(group.trial_id, result)
                if not stop and result["status"] == "running":
                    continue
            running.remove(group)
            ended_compute += _compute(group)
            last = group.last
            if searcher is not None:
                if last is not None:
                    scheduler.on_trial_complete(None, _Trial(group.trial_id), last)
                searcher.on_trial_complete(group.trial_id, last)
            log.groups += 1
            log.spent = (ended_compute + sum(_compute(g) for g in running)) / full
            if last is not None and last["status"] == "finished":
                log.finished += 1
                if incumbent is None or last[METRIC] < incumbent[0]:
                    incumbent = (float(last[METRIC]), group.true_final)
                if log.hit_at is None and incumbent[1] <= best + tol:
                    log.hit_at = log.spent
                log.trajectory.append((round(log.spent, 4), round(incumbent[1] - best, 5)))
            while len(running) < concurrency and start():
                pass
    log.spent = ended_compute / full
    log.pick_true = incumbent[1] if incumbent else math.nan
    return log


# ---------------------------------------------------------------------------------------------------------
def rung_correlations(setup: Setup, n_shapes: int, seed: int) -> dict[str, dict[int, float]]:
    """Spearman of each rung metric at each rung with the true final loss over `n_shapes` random shapes."""
    space = get_search_space(setup.space_name)
    cfg = SimulatorConfig(**setup.sim)
    rng = np.random.default_rng(seed)
    shapes = [space.sample(rng).to_dict() for _ in range(n_shapes)]
    truth = np.array([noiseless_final_loss(schedule_from_dict(dict(s)), cfg) for s in shapes])
    probes = setup.probe_steps()
    out: dict[str, dict[int, float]] = {}
    for metric in ("raw", "cooldown", "predicted"):
        values = np.full((n_shapes, len(probes)), np.nan)
        for i, schedule in enumerate(shapes):
            sim = SimulatedGroup(TrialSpec.from_config(setup.trial_config(schedule, metric, noise_seed=seed)), f"c{i}")
            for result in sim.results():
                for j, p in enumerate(probes):
                    if np.isnan(values[i, j]) and result["step"] >= p and result["status"] == "running":
                        values[i, j] = result[RUNG_KEY]
        out[metric] = {}
        for j, p in enumerate(probes):
            ok = np.isfinite(values[:, j])
            rho = spearmanr(values[ok, j], truth[ok])[0] if ok.sum() > 2 else math.nan
            out[metric][p] = float(rho)
    return out


def summarise(logs: list[SweepLog], noise_tol: float) -> dict[str, Any]:
    """Per method: how many sweeps got within tol and the compute it took (a sweep that never did counts as
    infinite, so the median is only finite when most sweeps got there), the pick's regret, and how often
    the pick is within noise of the best."""
    charged = sorted(lg.hit_at if lg.hit_at is not None else math.inf for lg in logs)
    hits = [c for c in charged if math.isfinite(c)]
    return {
        "sweeps": len(logs),
        "reached_tol": len(hits),
        "compute_to_tol": charged,
        "compute_to_tol_median": float(np.median(charged)) if len(hits) * 2 > len(logs) else math.inf,
        "compute_to_tol_mean_of_hits": float(np.mean(hits)) if hits else math.nan,
        "compute_total_mean": float(np.mean([lg.spent for lg in logs])),
        "groups_mean": float(np.mean([lg.groups for lg in logs])),
        "finished_mean": float(np.mean([lg.finished for lg in logs])),
        "pick_regret_median": float(np.median([lg.pick_true for lg in logs])),
        "pick_within_noise": float(np.mean([lg.pick_true <= noise_tol for lg in logs])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="full")
    ap.add_argument("--law", default="mpl_25m", help="a law preset (trainable.loss_law)")
    ap.add_argument("--form", choices=("paper", "code"), default=None,
                    help="read the preset's parameters in this form (default: the preset's own)")
    ap.add_argument("--peak-lr", type=float, default=None, help="default: the preset's own peak LR")
    ap.add_argument("--noise-std", type=float, default=None, help="default: the preset's measured noise")
    ap.add_argument("--seed-offset-std", type=float, default=None, help="default: the preset's")
    ap.add_argument("--initial-loss", type=float, default=None, help="default: ln(50257), the GPT-2 vocabulary")
    ap.add_argument("--total-steps", type=int, default=8000)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grace", type=int, default=1000)
    ap.add_argument("--reduction", type=float, default=2.0)
    ap.add_argument("--cooldown-frac", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--budget", type=int, default=64, help="groups per TPE + ASHA sweep")
    ap.add_argument("--random-budget", type=int, default=96, help="groups per random-search sweep")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--tol", type=float, default=0.003)
    ap.add_argument("--dense", type=int, default=20000)
    ap.add_argument("--corr-shapes", type=int, default=100)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    law = get_law(args.law).in_form(args.form).to_dict() if args.form else args.law
    setting = preset_setting(args.law)
    pick = lambda given, default: default if given is None else given  # noqa: E731
    sim = {"law": law, "total_steps": args.total_steps, "eval_interval": args.eval_interval,
           "peak_lr": pick(args.peak_lr, setting.peak_lr), "noise_std": pick(args.noise_std, setting.noise_std),
           "seed_offset_std": pick(args.seed_offset_std, setting.seed_offset_std)}
    if args.initial_loss is not None:
        sim["initial_loss"] = args.initial_loss
    setup = Setup(args.space, sim, list(range(args.seeds)), args.grace, args.reduction, args.cooldown_frac)
    t0 = time.time()
    best, best_params, dense = true_best(setup, args.dense, np.random.default_rng(12345))
    # Random search's expected compute to land within tol, free of any budget: 1 / P(a random shape is there).
    p_tol = float(np.mean(dense <= best + args.tol))
    print(f"true best {best:.5f} ({time.time() - t0:.0f} s): {best_params}; P(random shape within tol) = "
          f"{p_tol:.4f}", flush=True)

    t0 = time.time()
    corr = rung_correlations(setup, args.corr_shapes, seed=777)
    print(f"rung correlations ({time.time() - t0:.0f} s): {json.dumps(corr)}", flush=True)

    cache: dict = {}
    logs: dict[str, list[SweepLog]] = {m: [] for m in args.methods}
    timing: dict[str, float] = {m: 0.0 for m in args.methods}
    for r in range(args.repeats):
        for m in args.methods:
            t0 = time.time()
            budget = args.random_budget if m == "random" else args.budget
            lg = run_sweep(setup, m, budget, args.concurrency, r, best, args.tol, cache)
            # Regret of the pick, relative to the true best.
            lg.pick_true = lg.pick_true - best
            logs[m].append(lg)
            timing[m] += time.time() - t0
            print(f"repeat {r} {m:15s} spent {lg.spent:6.2f} hit_at {lg.hit_at} pick regret {lg.pick_true:.4f} "
                  f"groups {lg.groups} finished {lg.finished} ({time.time() - t0:.0f} s)", flush=True)
    summary = {m: summarise(logs[m], sim["noise_std"]) for m in args.methods}
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "command": " ".join(sys.argv),
        "setup": {**vars(args), "sim": sim, "probe_steps": setup.probe_steps()},
        "true_best": best, "true_best_params": best_params,
        "random_shape_within_tol": p_tol, "random_expected_compute_to_tol": 1.0 / p_tol if p_tol else math.inf,
        "rung_spearman": corr,
        "summary": summary,
        "seconds": timing,
        "trajectories": {m: [lg.trajectory for lg in logs[m]] for m in args.methods},
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\nrandom search, expected compute to tol (1 / P): {report['random_expected_compute_to_tol']:.1f}")
    print("method            reached  compute->tol median (mean of hits)  spend/sweep  pick regret  within noise")
    for m, s in summary.items():
        print(f"{m:16s}  {s['reached_tol']:2d}/{s['sweeps']:<2d}    {s['compute_to_tol_median']:6.1f} "
              f"({s['compute_to_tol_mean_of_hits']:5.1f})                {s['compute_total_mean']:6.1f}      "
              f"{s['pick_regret_median']:.4f}       {s['pick_within_noise']:.2f}")


if __name__ == "__main__":
    main()
