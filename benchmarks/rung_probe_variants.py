"""Longer cooldown probes and probes to zero LR, on the proving ground's real curves: do they rank shapes early?

    python benchmarks/rung_probe_variants.py [--runs benchmarks/rung_metrics_proving_ground.json]
        [--rungs 150 300] [--fracs 0.2 0.5] [--seeds 0 1 2 3 4] [--jobs 2]
        [--out benchmarks/results/rung_probe_variants.json]

Issue #14, section 4, the two untried changes to the rung metric that need new training. The runs of
`benchmarks/rung_metrics_gpt.py` (13 shapes x 5 seeds, 1,200 steps, their final val loss) are the reference;
this script trains each (shape, seed) again with the same config, but only up to the last rung, and at each
rung forks several cooldown probes from the same state (`trainable.cooldown_probe.run_probe`, which restores
every bit of state after each), one per variant:

- `f{frac}`:      1-sqrt from the current multiplier to the schedule's floor over frac x the steps so far
                  (`f0.2` is the trainer's own probe, the sweep's `cooldown` rung metric);
- `f{frac}-zero`: the same, to an LR of zero.

`f0.2` must reproduce the stored run's `val_loss_cooldown` at each rung: that checks the runs are the same
runs (same seeds, same data order, CPU determinism) and that the extra forks leave the main run untouched
(the raw val loss at every eval is compared too). The summary: per rung and variant, Spearman of the
variant's seed-mean probe loss with the seed-mean final loss of the stored runs, over every shape and over the
shapes with a warmup, and the extra optimizer steps per run the variant costs. Runs are saved as they
finish and reused, so a cut-short run continues.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rung_metrics_gpt import shapes, spearman  # noqa: E402  (this script's folder is on sys.path)


class _StopAfter(Exception):
    """Raised from the report hook once the last rung's probes are done: the rest of the run is not needed."""


def variant_names(fracs: list[float]) -> list[str]:
    return [f"f{f:g}{suffix}" for f in fracs for suffix in ("", "-zero")]


def train_prefix(cfg_dict: dict, fracs: list[float], stop_step: int) -> dict:
    """Train one run to `stop_step`, forking every probe variant at each planned probe step."""
    import torch

    from trainable.config import TrainConfig
    from trainable.cooldown_probe import ProbeResult, probe_length, run_probe
    from trainable.distributed import setup_distributed, teardown_distributed
    from trainable.train import Trainer

    torch.set_num_threads(1)
    probes: dict[int, dict[str, float]] = {}
    evals: dict[int, float] = {}

    class VariantTrainer(Trainer):
        def _probe(self, ev) -> ProbeResult:
            k_main = self.probe_plan[self.step]
            if k_main == 0:
                return super()._probe(ev)
            current = float(self.multipliers[self.step - 1])
            floor = float(self.multipliers[-1])
            here: dict[str, float] = {}
            for frac in fracs:
                for suffix, end in (("", floor), ("-zero", 0.0)):
                    k = probe_length(self.step, frac)
                    here[f"f{frac:g}{suffix}"] = run_probe(self, self.step, self.cfg.optimizer.lr, current, end, k).val_loss
            probes[self.step] = here
            # The trainer's own probe last, so the report carries it and `probe_steps_run` counts it as usual.
            return super()._probe(ev)

    class Hooks:
        def on_report(self, report) -> None:
            evals[report.metrics["step"]] = report.metrics["val_loss"]
            if report.metrics["step"] >= stop_step:
                raise _StopAfter

    cfg = TrainConfig.from_dict(cfg_dict)
    env = setup_distributed("cpu")
    started = time.perf_counter()
    try:
        VariantTrainer(cfg, env, Hooks()).run(None)
    except _StopAfter:
        pass
    finally:
        teardown_distributed(env)
    return {"seconds": time.perf_counter() - started, "probes": {str(k): v for k, v in probes.items()},
            "val_loss": {str(k): v for k, v in evals.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(REPO / "benchmarks/rung_metrics_proving_ground.json"))
    p.add_argument("--rungs", type=int, nargs="+", default=[150, 300])
    p.add_argument("--fracs", type=float, nargs="+", default=[0.2, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--samples", type=int, default=4, help="as the stored runs' --samples")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=120.0, help="start no new run after this long")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/rung_probe_variants.json"))
    args = p.parse_args(argv)

    stored = json.loads(Path(args.runs).read_text())["runs"]
    named = shapes(args.samples, 0)
    out = Path(args.out)
    done: dict[str, Any] = json.loads(out.read_text())["runs"] if out.exists() else {}
    plan = []  # (seed, shape name, stored key, the new run's config)
    for seed in args.seeds:  # seed-major, so a cut-short benchmark has whole seeds
        for name, schedule in named:
            key = next(k for k, r in stored.items()
                       if json.loads(k)["schedule"] == schedule and json.loads(k)["seed"] == seed)
            cfg = json.loads(key)
            cfg["eval"] = {**cfg["eval"], "probe_steps": list(args.rungs)}
            plan.append((seed, name, key, cfg))
    tag = json.dumps({"rungs": args.rungs, "fracs": args.fracs})
    todo = [(s, n, k, c) for s, n, k, c in plan if f"{tag} {k}" not in done]
    deadline = time.time() + 60 * args.max_minutes
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(train_prefix, c, args.fracs, max(args.rungs)): (s, n, k) for s, n, k, c in todo}
            for fut in as_completed(futures):
                seed, name, key = futures[fut]
                run = fut.result()
                done[f"{tag} {key}"] = run
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"runs": done}, indent=1))
                print(f"trained {name} seed {seed} to step {max(args.rungs)} in {run['seconds']:.0f} s", flush=True)
                if time.time() > deadline:
                    for f in futures:
                        f.cancel()
    print(summary(plan, stored, done, tag, args))
    return 0


def summary(plan: list, stored: dict, done: dict, tag: str, args: argparse.Namespace) -> str:
    variants = variant_names(args.fracs)
    lines = []
    # The check: the new runs are the stored runs (raw val loss at each eval, the trainer's probe at each rung).
    worst_raw = worst_probe = 0.0
    for _, _, key, _ in plan:
        new = done.get(f"{tag} {key}")
        if new is None:
            continue
        old = {r["step"]: r for r in stored[key]["reports"]}
        for step, loss in new["val_loss"].items():
            worst_raw = max(worst_raw, abs(loss - old[int(step)]["val_loss"]))
        for step, probes in new["probes"].items():
            worst_probe = max(worst_probe, abs(probes["f0.2"] - old[int(step)]["val_loss_cooldown"]))
    lines.append(f"largest difference from the stored runs: raw val loss {worst_raw:.2e}, trainer's probe (f0.2) "
                 f"{worst_probe:.2e} nats")
    seeds = sorted({s for s, _, k, _ in plan if f"{tag} {k}" in done})
    names = [n for n in dict.fromkeys(n for _, n, _, _ in plan)
             if all(f"{tag} {k}" in done for s, m, k, _ in plan if m == n and s in seeds)]
    warm = [n for n in names if not _no_warmup(plan, n)]
    final = {n: float(np.mean([stored[k]["reports"][-1]["val_loss"] for s, m, k, _ in plan if m == n and s in seeds]))
             for n in names}
    lines += [f"seeds {seeds}, {len(names)} shapes ({len(warm)} with a warmup)", "",
              "| rung | variant | extra steps per run | Spearman, all shapes | Spearman, with a warmup |",
              "| --- | --- | --- | --- | --- |"]
    for rung in args.rungs:
        for v in ["raw"] + variants:
            per = {}
            for n in names:
                vals = []
                for s, m, k, _ in plan:
                    if m != n or s not in seeds:
                        continue
                    new = done[f"{tag} {k}"]
                    at = min(int(x) for x in new["probes"] if int(x) >= rung)
                    vals.append(new["val_loss"][str(at)] if v == "raw" else new["probes"][str(at)][v])
                per[n] = float(np.mean(vals))
            cells = []
            for group in (names, warm):
                rho, pval, n_ = spearman([per[n] for n in group], [final[n] for n in group])
                cells.append(f"{rho:.3f} (p {pval:.2g}, n={n_})")
            cost = "0" if v == "raw" else str(_cost(v, rung))
            lines.append(f"| {rung} | {v} | {cost} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _cost(variant: str, rung: int) -> int:
    from trainable.cooldown_probe import probe_length

    return probe_length(rung, float(variant[1:].removesuffix("-zero")))


def _no_warmup(plan: list, name: str) -> bool:
    """As `rung_metrics_refit.py` splits the shapes: by the warmup the loss law infers from the LRs."""
    from search_spaces import schedule_from_dict
    from trainable.loss_law import infer_warmup_steps

    cfg = next(c for _, n, _, c in plan if n == name)
    return infer_warmup_steps(schedule_from_dict(cfg["schedule"]).multipliers(cfg["horizon"]["steps"])) == 0


if __name__ == "__main__":
    sys.exit(main())
