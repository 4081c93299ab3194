"""Fit the Multi-Power Law to the proving ground's real loss curves: the `proving_ground` law preset.

    python benchmarks/proving_ground_law.py [--runs benchmarks/rung_metrics_proving_ground.json]
                                            [--out benchmarks/proving_ground_law.json]

Input: the runs of `benchmarks/rung_metrics_gpt.py --base-config configs/proving_ground_train.yaml` (every
shape x seed, val loss every 30 of 1,200 steps at peak LR 4e-3; the cooldown probes are forks, so the main
curve is untouched by them). Method:

1. Per shape, the seed-mean val-loss curve.
2. The law (paper form, `trainable.loss_law.fit`, the project's own fit) fitted to the mean curves of the
   *presets that warm up* together, from `--min-step` on; the shapes drawn from the `full` space are held
   out. Presets that start at the peak LR (`constant`, `pgolf_warmdown`, `seed000_cosine`) are left out of
   the fit: at 4e-3 a start without warmup is unstable on this model and they end ~0.5 nats worse, which
   no term of the law describes (their errors are still printed).
3. Checks: the fit's residuals on the presets, and on the held-out shapes the error of the predicted final
   loss and the Spearman correlation of predicted with measured final loss over every shape.
4. Seed noise for the simulator, from the final losses F[shape, seed] of the shapes with a warmup by
   two-way ANOVA: `seed_offset_std`
   is the part a seed shares across shapes (same init and data order), `noise_std` the rest (what a paired
   comparison still sees).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search_spaces import schedule_from_dict  # noqa: E402
from trainable.loss_law import fit, infer_warmup_steps  # noqa: E402

PEAK_LR = 4e-3  # configs/proving_ground_train.yaml
TOTAL_STEPS = 1200


def load_curves(path: Path) -> dict[str, dict]:
    """Shape name -> {schedule, steps, per-seed val-loss curves (seed -> array)} of finished runs."""
    runs = json.loads(path.read_text())["runs"]
    shapes: dict[str, dict] = {}
    for key, run in runs.items():
        cfg = json.loads(key)
        if run["status"] != "finished":
            continue
        schedule = cfg["schedule"]
        name = schedule.get("preset") or schedule_from_dict(schedule).describe()
        steps = [r["step"] for r in run["reports"]]
        entry = shapes.setdefault(name, {"schedule": schedule, "steps": steps, "seeds": {}})
        assert entry["steps"] == steps, f"{name}: seeds evaluated at different steps"
        entry["seeds"][cfg["seed"]] = np.array([r["val_loss"] for r in run["reports"]])
    return shapes


def anova_noise(finals: np.ndarray) -> tuple[float, float]:
    """(seed_offset_std, noise_std) from a complete shapes x seeds table of final losses (two-way ANOVA,
    method of moments; a negative variance estimate is reported as 0)."""
    n_shapes, n_seeds = finals.shape
    resid = finals - finals.mean(axis=1, keepdims=True) - finals.mean(axis=0, keepdims=True) + finals.mean()
    noise_var = float((resid ** 2).sum() / ((n_shapes - 1) * (n_seeds - 1)))
    seed_means = finals.mean(axis=0)
    offset_var = float(np.var(seed_means, ddof=1)) - noise_var / n_shapes
    return math.sqrt(max(offset_var, 0.0)), math.sqrt(noise_var)


def fit_law(shapes: dict[str, dict], seeds: list[int], min_step: int):
    """(law, role of each shape, absolute LRs per shape, seed-mean curve per shape): the paper-form law
    fitted to the seed-mean curves of the presets that warm up, from `min_step` on."""
    lrs = {n: PEAK_LR * schedule_from_dict(s["schedule"]).multipliers(TOTAL_STEPS) for n, s in shapes.items()}
    mean = {n: np.mean([s["seeds"][k] for k in seeds], axis=0) for n, s in shapes.items()}
    roles = {n: "no warmup" if infer_warmup_steps(lrs[n]) == 0 else "fitted" if "preset" in s["schedule"]
             else "held out" for n, s in shapes.items()}
    train = [n for n in shapes if roles[n] == "fitted"]
    keep = {n: np.asarray(shapes[n]["steps"]) >= min_step for n in train}
    law = fit([list(np.asarray(shapes[n]["steps"])[keep[n]]) for n in train], [mean[n][keep[n]] for n in train],
              [lrs[n] for n in train], [infer_warmup_steps(lrs[n]) for n in train])
    return law, roles, lrs, mean


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=str(REPO / "benchmarks" / "rung_metrics_proving_ground.json"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "proving_ground_law.json"))
    ap.add_argument("--min-step", type=int, default=0, help="fit only eval points at or after this step")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: every seed all shapes have")
    args = ap.parse_args()

    shapes = load_curves(Path(args.runs))
    seeds = args.seeds or sorted(set.intersection(*(set(s["seeds"]) for s in shapes.values())))
    t0 = time.perf_counter()
    law, roles, lrs, mean = fit_law(shapes, seeds, args.min_step)
    fit_s = time.perf_counter() - t0
    train = [n for n, r in roles.items() if r == "fitted"]

    def predicted(n: str) -> np.ndarray:
        return law.loss_curve(lrs[n], infer_warmup_steps(lrs[n]), steps=shapes[n]["steps"])

    rows = []
    for n in shapes:
        curve = predicted(n)
        finals = [shapes[n]["seeds"][k][-1] for k in seeds]
        fitted_range = np.asarray(shapes[n]["steps"]) >= args.min_step
        rows.append({"shape": n, "role": roles[n], "schedule": shapes[n]["schedule"],
                     "measured_final": float(np.mean(finals)),
                     "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
                     "predicted_final": float(curve[-1]),
                     "curve_rmse": float(np.sqrt(np.mean((curve - mean[n])[fitted_range] ** 2)))})
    # The simulator models the stable runs: the no-warmup shapes' instability stays out of its noise.
    finals = np.array([[shapes[n]["seeds"][k][-1] for k in seeds] for n in shapes if roles[n] != "no warmup"])
    offset_std, noise_std = anova_noise(finals) if len(seeds) > 1 else (math.nan, math.nan)
    stable = [r for r in rows if r["role"] != "no warmup"]
    rho = spearmanr([r["predicted_final"] for r in stable], [r["measured_final"] for r in stable]).statistic
    held_err = [abs(r["predicted_final"] - r["measured_final"]) for r in rows if r["role"] == "held out"]
    train_err = [abs(r["predicted_final"] - r["measured_final"]) for r in rows if r["role"] == "fitted"]

    print(f"{len(shapes)} shapes x {len(seeds)} seeds; fitted on {len(train)} presets (eval steps >= "
          f"{args.min_step}) in {fit_s:.1f} s")
    print(f"law (paper form): {json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in law.to_dict().items()})}")
    print("| shape | role | measured final (mean) | seed std | law final | law - measured | curve RMSE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: r["measured_final"]):
        print(f"| {r['shape']} | {r['role']} | {r['measured_final']:.4f} | {r['final_std']:.4f} | "
              f"{r['predicted_final']:.4f} | {r['predicted_final'] - r['measured_final']:+.4f} | {r['curve_rmse']:.4f} |")
    print(f"final-loss error: fitted presets mean {np.mean(train_err):.4f} (max {np.max(train_err):.4f}); "
          f"held-out shapes mean {np.mean(held_err) if held_err else math.nan:.4f} "
          f"(max {np.max(held_err) if held_err else math.nan:.4f}); Spearman(law, measured) over the {len(stable)} shapes "
          f"with a warmup {rho:.3f}")
    print(f"seed noise (two-way ANOVA of finals): seed_offset_std {offset_std:.4f}, noise_std {noise_std:.4f}")
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
        "runs": str(Path(args.runs).relative_to(REPO)) if Path(args.runs).is_relative_to(REPO) else args.runs,
        "peak_lr": PEAK_LR, "total_steps": TOTAL_STEPS, "seeds": seeds, "law": {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in law.to_dict().items()},
        "min_step": args.min_step, "seed_offset_std": offset_std, "noise_std": noise_std,
        "spearman_warmup_shapes": float(rho), "shapes": rows,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
