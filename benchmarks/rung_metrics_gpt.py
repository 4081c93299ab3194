"""Rung metrics on the tiny GPT: how well each metric taken at a rung ranks schedule shapes by final val loss.

    python benchmarks/rung_metrics_gpt.py [--steps 120] [--rungs 40] [--interval 8] [--probe-frac 0.2]
        [--samples 5] [--seeds 0 1] [--lr 3e-3] [--batch 4] [--seq-len 64] [--eval-tokens 4096]
        [--jobs 1] [--max-minutes 14] [--out /tmp/rung_metrics_gpt.json]
    python benchmarks/rung_metrics_gpt.py --base-config configs/proving_ground_train.yaml --rungs 150 300 600 \
        --interval 30 --eval-tokens 32768 --samples 4 --seeds 0 1 2 3 4 --jobs 2      # the proving ground
    python benchmarks/rung_metrics_gpt.py --fork-cost gpt2-124m

Issue #5, section 5 (tiny-GPT part). Shapes: every preset (default arguments) plus `--samples` draws from
the `full` search space (numpy rng seeded with `--shape-seed`). Each (shape, seed) is one single-process run
of the real trainer (`trainable.train.train`) on the bundled corpus, T = `--steps`, evaluating every
`--interval` steps on the same `--eval-tokens` val tokens, with `eval.probe_steps` at the rungs. With
`--base-config` the model, data, optimizer, horizon and batch come from that trainer config instead (the
flags for them are ignored). At each rung (the first eval at or after each of `--rungs`) it takes:

- raw:       the val loss there;
- cooldown:  `val_loss_cooldown`, the trainer's cooldown probe (`trainable.cooldown_probe`);
- predicted: the Multi-Power-Law prediction of the final loss from the val-loss points up to the rung
             (`trainable.loss_law.predict_final_loss` with `default_prior` and prior strength 0.01, the
             settings of the sweep's `predicted` rung metric; NaN below 4 points);

and prints, per rung, per seed and for the seed means, the Spearman correlation of each with the final val
loss, and the mean absolute error of `predicted` (seed means) against the final loss.
Runs are saved to `--out` as they finish and reused when the same settings are run again, so a run cut
short by `--max-minutes` (or Ctrl-C) continues where it stopped. `--jobs N` trains N runs at a time in
separate processes (each run is still one process, one torch thread by default).

`--fork-cost MODEL` instead measures what one probe fork holds in host memory and how long capture and
restore take, for a model after one optimizer step (CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces import get_search_space, list_presets  # noqa: E402

PRIOR_STRENGTH = 0.01  # as sweep's `predicted` rung metric
MIN_FIT_POINTS = 4
METRICS = ("raw", "cooldown", "predicted")


def shapes(samples: int, shape_seed: int) -> list[tuple[str, dict]]:
    """(name, schedule dict): every preset, then `samples` draws from the `full` space."""
    out = [(name, {"preset": name}) for name in list_presets()]
    rng = np.random.default_rng(shape_seed)
    space = get_search_space("full")
    out += [(f"full_{i}", space.sample(rng).to_dict()) for i in range(samples)]
    return out


def run_config(args: argparse.Namespace, schedule: dict, seed: int) -> dict:
    """The trainer config of one run (a plain dict: it is also the cache key in the output file)."""
    evals = {"interval": args.interval, "max_tokens": args.eval_tokens,
             "probe_steps": list(args.rungs), "probe_frac": args.probe_frac}
    if args.base_config:
        import yaml

        base = yaml.safe_load(Path(args.base_config).read_text())
        return {**base, "schedule": schedule, "eval": {**base.get("eval", {}), **evals},
                "seed": seed, "data_seed": seed, "device": "cpu"}
    return {
        "model": "tiny",
        "data": {"bundled": True},
        "schedule": schedule,
        "optimizer": {"lr": args.lr},
        "horizon": {"steps": args.steps},
        "batch": {"micro_batch_size": args.batch, "seq_len": args.seq_len, "grad_accum": 1},
        "eval": evals,
        "seed": seed,
        "data_seed": seed,
        "device": "cpu",
    }


class _Keep:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def on_report(self, report) -> None:
        self.reports.append(dict(report.metrics))


def train_one(cfg_dict: dict, threads: int = 1, deadline: float = math.inf) -> dict | None:
    """Train one run; its reports (step, val_loss, ... val_loss_cooldown) and wall time. None when it would
    start after `deadline` (a `time.time()` value)."""
    if time.time() > deadline:
        return None
    import torch

    from trainable.config import TrainConfig
    from trainable.train import train

    torch.set_num_threads(threads)

    hooks = _Keep()
    started = time.perf_counter()
    result = train(TrainConfig.from_dict(cfg_dict), hooks=hooks)
    keep = ("step", "lr_multiplier", "train_loss", "val_loss", "val_bpb", "val_loss_cooldown", "probe_steps_run")
    return {
        "status": result.status,
        "seconds": time.perf_counter() - started,
        "reports": [{k: r[k] for k in keep if k in r} for r in hooks.reports],
    }


def rung_metrics(run: dict, cfg_dict: dict, rung: int) -> dict[str, float]:
    """raw / cooldown / predicted at the rung and the final val loss of one finished run."""
    from trainable.config import TrainConfig
    from trainable.loss_law import default_prior, predict_final_loss

    reports = run["reports"]
    at = next(r for r in reports if r["step"] >= rung)
    cfg = TrainConfig.from_dict(cfg_dict)
    lrs = cfg.optimizer.lr * cfg.build_schedule().multipliers(cfg.total_steps())
    seen = [r for r in reports if r["step"] <= at["step"] and math.isfinite(r["val_loss"])]
    predicted = math.nan
    if len(seen) >= MIN_FIT_POINTS:
        try:
            predicted = predict_final_loss([r["step"] for r in seen], [r["val_loss"] for r in seen], lrs,
                                           prior=default_prior(lrs), prior_strength=PRIOR_STRENGTH)
        except (ValueError, np.linalg.LinAlgError) as err:
            print(f"  predicted: fit failed ({err})", flush=True)
    return {
        "raw": at["val_loss"],
        "cooldown": at.get("val_loss_cooldown", math.nan),
        "predicted": float(predicted),
        "final": reports[-1]["val_loss"] if run["status"] == "finished" else math.nan,
        "rung_step": at["step"],
        "probe_steps_run": reports[-1].get("probe_steps_run", 0),
    }


def spearman(x: list[float], y: list[float]) -> tuple[float, float, int]:
    """Spearman's rho over the pairs where both are finite, its two-sided p-value, and the pair count."""
    from scipy.stats import spearmanr

    pairs = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return math.nan, math.nan, len(pairs)
    res = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return float(res.statistic), float(res.pvalue), len(pairs)


def _cell(x: list[float], y: list[float]) -> str:
    rho, p, n = spearman(x, y)
    return f"{rho:.3f} (p {p:.2g}, n={n})"


def summarise(table: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> str:
    """The per-shape table (per seed, or seed means from 3 seeds on) and the Spearman rows, as Markdown."""
    if len(seeds) > 2:
        lines = ["| shape | seeds | raw | cooldown | predicted | final (mean) | final (std) |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, per_seed in table.items():
            ms = [per_seed[s] for s in seeds if s in per_seed]
            mean = {k: float(np.mean([m[k] for m in ms])) for k in ("raw", "cooldown", "predicted", "final")}
            std = float(np.std([m["final"] for m in ms], ddof=1)) if len(ms) > 1 else math.nan
            lines.append(f"| {name} | {len(ms)} | {mean['raw']:.4f} | {mean['cooldown']:.4f} | {mean['predicted']:.4f}"
                         f" | {mean['final']:.4f} | {std:.4f} |")
        return "\n".join(lines + _spearman_rows(table, seeds))
    lines = ["| shape | " + " | ".join(f"raw s{s} | cooldown s{s} | predicted s{s} | final s{s}" for s in seeds) + " |",
             "| --- |" + " --- | --- | --- | --- |" * len(seeds)]
    for name, per_seed in table.items():
        cells = []
        for s in seeds:
            m = per_seed.get(s)
            cells += [f"{m[k]:.4f}" if m and math.isfinite(m[k]) else "-" for k in ("raw", "cooldown", "predicted", "final")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _spearman_rows(table, seeds))


def _spearman_rows(table: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> list[str]:
    """Spearman of each metric with the final loss: per seed, for the seed means, and the seed-vs-seed ceiling."""
    lines = ["", "| Spearman with final val loss | " + " | ".join(METRICS) + " |", "| --- |" + " --- |" * len(METRICS)]
    groups = [(f"seed {s}", [s]) for s in seeds] + ([("mean over seeds", seeds)] if len(seeds) > 1 else [])
    for label, group in groups:
        names = [n for n in table if all(s in table[n] for s in group)]
        final = [float(np.mean([table[n][s]["final"] for s in group])) for n in names]
        cells = [_cell([float(np.mean([table[n][s][m] for s in group])) for n in names], final) for m in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    names = [n for n in table if all(s in table[n] for s in seeds)]
    errors = [abs(float(np.mean([table[n][s]["predicted"] - table[n][s]["final"] for s in seeds]))) for n in names]
    errors = [e for e in errors if math.isfinite(e)]
    if errors:
        lines += ["", f"Mean absolute error of `predicted` (seed means) against the final loss: {np.mean(errors):.4f} "
                  f"nats over {len(errors)} shapes (max {np.max(errors):.4f})."]
    if len(seeds) > 1:
        # The ceiling for any rung metric: how well one seed's *final* loss ranks the shapes for another seed.
        a, b = seeds[0], seeds[1]
        names = [n for n in table if a in table[n] and b in table[n]]
        fa, fb = [table[n][a]["final"] for n in names], [table[n][b]["final"] for n in names]
        lines += ["", f"Final val loss of seed {a} vs seed {b} (the ceiling for a single-seed rung metric): "
                  f"Spearman {_cell(fa, fb)}; seed noise (std of the paired difference / sqrt 2) "
                  f"{float(np.std(np.subtract(fa, fb), ddof=1)) / math.sqrt(2):.4f} nats; spread of the "
                  f"seed-mean final loss across shapes (std) {float(np.std(np.add(fa, fb) / 2, ddof=1)):.4f} nats."]
    return lines


def fork_cost(model: str) -> None:
    """Host bytes of one probe fork, and capture / restore seconds, for `model` after one step (CPU)."""
    import torch

    from trainable.config import TrainConfig
    from trainable.cooldown_probe import ForkState
    from trainable.distributed import setup_distributed, teardown_distributed
    from trainable.train import Trainer

    cfg = TrainConfig.from_dict({"model": model, "data": {"bundled": True}, "horizon": {"steps": 10},
                                 "batch": {"micro_batch_size": 1, "seq_len": 64}, "device": "cpu"})
    env = setup_distributed("cpu")
    try:
        trainer = Trainer(cfg, env, hooks=None)
        trainer.train_step()  # creates the Adam moments
        params = sum(p.numel() * p.element_size() for p in trainer.raw_model.parameters())
        t0 = time.perf_counter()
        fork = ForkState.capture(trainer)
        t1 = time.perf_counter()
        fork.restore(trainer)
        t2 = time.perf_counter()
        print(f"{model}: parameters {params / 2**20:.0f} MiB; fork holds {fork.nbytes() / 2**20:.0f} MiB of host "
              f"memory ({fork.nbytes() / params:.2f}x the parameters); capture {t1 - t0:.2f} s, restore {t2 - t1:.2f} s "
              f"(torch {torch.__version__}, CPU)", flush=True)
    finally:
        teardown_distributed(env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=120, help="horizon T")
    p.add_argument("--rungs", type=int, nargs="+", default=[40], help="rung steps (first eval at or after each)")
    p.add_argument("--base-config", help="a trainer config YAML to take model, data, optimizer, horizon, batch from")
    p.add_argument("--interval", type=int, default=8, help="eval interval")
    p.add_argument("--probe-frac", type=float, default=0.2, help="cooldown probe length / steps so far")
    p.add_argument("--samples", type=int, default=5, help="shapes drawn from the `full` space, besides the presets")
    p.add_argument("--shape-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--lr", type=float, default=3e-3, help="peak LR")
    p.add_argument("--batch", type=int, default=4, help="micro-batch size")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at a time (separate processes)")
    p.add_argument("--max-minutes", type=float, default=14.0, help="start no new run after this long")
    p.add_argument("--out", default="/tmp/rung_metrics_gpt.json", help="runs, saved as they finish")
    p.add_argument("--fork-cost", metavar="MODEL", help="only measure one fork's memory and time for MODEL")
    args = p.parse_args(argv)

    if args.fork_cost:
        import torch

        torch.set_num_threads(args.threads)
        fork_cost(args.fork_cost)
        return 0

    out = Path(args.out)
    saved: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    runs: dict[str, Any] = saved.get("runs", {})
    started = time.perf_counter()
    deadline = time.time() + 60 * args.max_minutes
    # Seed-major: a benchmark cut short still has whole seeds to correlate.
    plan = [(seed, name, run_config(args, schedule, seed)) for seed in args.seeds
            for name, schedule in shapes(args.samples, args.shape_seed)]
    todo = {json.dumps(c, sort_keys=True): c for _, _, c in plan if json.dumps(c, sort_keys=True) not in runs}
    if todo:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared with this one
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(train_one, c, args.threads, deadline): key for key, c in todo.items()}
            for fut in as_completed(futures):
                run = fut.result()
                if run is None:
                    continue  # past the time budget
                runs[futures[fut]] = run
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"runs": runs}, indent=1))
                name = next(n for s, n, c in plan if json.dumps(c, sort_keys=True) == futures[fut])
                print(f"trained {name} seed {todo[futures[fut]]['seed']} in {run['seconds']:.0f} s", flush=True)
    print()
    setting = (f"config {args.base_config}" if args.base_config else
               f"T={args.steps}, lr {args.lr}, batch {args.batch}x{args.seq_len}")
    print(f"{setting}, rungs {args.rungs}, eval every {args.interval} on {args.eval_tokens} val tokens, probe "
          f"{args.probe_frac} x steps so far, seeds {args.seeds}, {(time.perf_counter() - started) / 60:.1f} min")
    for rung in args.rungs:
        table: dict[str, dict[int, dict[str, float]]] = {}
        for seed, name, cfg_dict in plan:
            run = runs.get(json.dumps(cfg_dict, sort_keys=True))
            if run is None:
                print(f"time budget spent: no run of {name} seed {seed}", flush=True)
                continue
            m = rung_metrics(run, cfg_dict, rung)
            table.setdefault(name, {})[seed] = m
            print(f"{name:28s} seed {seed}: raw {m['raw']:.4f} cooldown {m['cooldown']:.4f} predicted "
                  f"{m['predicted']:.4f} final {m['final']:.4f} (rung at {m['rung_step']}, {run['seconds']:.0f} s)")
        print(f"\n### Rung at step {rung}, {len(table)} shapes\n")
        done = [s for s in args.seeds if any(s in per_seed for per_seed in table.values())]  # seeds with any run
        print(summarise(table, done) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
