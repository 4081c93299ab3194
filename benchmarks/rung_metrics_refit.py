"""Two changes to the `predicted` rung metric, measured on the proving ground's real curves without training
again: the cooldown probe fed to the law fit, and a prior fitted on other shapes of the same model.

    python benchmarks/rung_metrics_refit.py [--runs benchmarks/rung_metrics_proving_ground.json]
                                            [--rungs 150 300 600] [--out FILE]

Input: the runs of `benchmarks/rung_metrics_gpt.py` (every shape x seed: the val loss every 30 steps and the
cooldown probe's val loss at each rung). At each rung, for every run, `predicted` (the final loss the
Multi-Power Law predicts from the curve so far, `trainable.loss_law`) is computed four ways:

- `default`: as the sweep does today: the prefix of the curve, the paper's 100M fit moved to this peak LR
  as the prior (pull 0.01, as `sweep.engine.rung_metrics`);
- `probe`: the same, with the probe as a second run in the fit: its LR sequence is the run's up to the rung,
  then the probe's 1-sqrt anneal (`trainable.cooldown_probe.probe_multipliers`), and its one observed point
  is the probe's val loss. The prefix alone says little about the law's loss-drop term (B, C, beta, gamma)
  before the LR has decayed; the probe is an observed decay;
- `cv`: the prefix with a prior fitted (paper form, `trainable.loss_law.fit`) on the seed-mean curves of
  the *other* shapes that warm up, leave-one-shape-out: what a law fitted on an earlier sweep of the same
  model would give. The shape being predicted never informs its own prior;
- `cv+probe`: both.

Beside them, `raw` and `cooldown` from the same runs. Printed: Spearman of each metric's seed mean with the
mean final val loss, over every shape and over the shapes with a warmup, and the mean absolute error of each
`predicted` (seed means) against the final loss.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The rung-metric benchmark's settings and Spearman, so both scripts score alike (this script's folder is on
# sys.path).
from rung_metrics_gpt import MIN_FIT_POINTS, PRIOR_STRENGTH, spearman  # noqa: E402
from search_spaces import schedule_from_dict  # noqa: E402
from trainable.config import TrainConfig  # noqa: E402
from trainable.cooldown_probe import plan_probes, probe_multipliers  # noqa: E402
from trainable.loss_law import default_prior, fit, infer_warmup_steps  # noqa: E402

VARIANTS = ("default", "probe", "cv", "cv+probe")


def load_runs(path: Path) -> tuple[dict[str, dict], TrainConfig]:
    """Shape name -> {schedule, lrs (absolute, whole horizon), seeds: seed -> reports} of finished runs, and
    one run's config (every run shares all but the schedule and seed)."""
    shapes: dict[str, dict] = {}
    cfg = None
    for key, run in json.loads(path.read_text())["runs"].items():
        if run["status"] != "finished":
            continue
        cfg_dict = json.loads(key)
        cfg = TrainConfig.from_dict(cfg_dict)
        schedule = cfg_dict["schedule"]
        name = schedule.get("preset") or schedule_from_dict(schedule).describe()
        entry = shapes.setdefault(name, {"schedule": schedule, "seeds": {},
                                         "lrs": cfg.optimizer.lr * cfg.build_schedule().multipliers(cfg.total_steps())})
        entry["seeds"][cfg_dict["seed"]] = run["reports"]
    assert cfg is not None, f"{path}: no finished run"
    return shapes, cfg


def cv_priors(shapes: dict[str, dict], seeds: list[int], min_step: int) -> dict[str, object]:
    """Per shape, the law fitted on the seed-mean curves of every *other* shape with a warmup."""
    warm = [n for n, s in shapes.items() if infer_warmup_steps(s["lrs"]) > 0]
    curves = {}
    for n in warm:
        steps = np.array([r["step"] for r in shapes[n]["seeds"][seeds[0]]])
        mean = np.mean([[r["val_loss"] for r in shapes[n]["seeds"][k]] for k in seeds], axis=0)
        keep = steps >= min_step
        curves[n] = (list(steps[keep]), mean[keep])
    priors = {}
    for held in shapes:
        train = [n for n in warm if n != held]
        priors[held] = fit([curves[n][0] for n in train], [curves[n][1] for n in train],
                           [shapes[n]["lrs"] for n in train], [infer_warmup_steps(shapes[n]["lrs"]) for n in train])
    return priors


def predictions(reports: list[dict], lrs: np.ndarray, rung: int, probe_len: int, prior_cv) -> dict[str, float]:
    """raw, cooldown, final and the four `predicted` variants of one run at one rung."""
    at = next(r for r in reports if r["step"] >= rung)
    seen = [r for r in reports if r["step"] <= at["step"] and math.isfinite(r["val_loss"])]
    w = infer_warmup_steps(lrs)
    out = {"raw": at["val_loss"], "cooldown": at.get("val_loss_cooldown", math.nan), "final": reports[-1]["val_loss"]}
    runs_steps, runs_losses, runs_lrs = [[r["step"] for r in seen]], [[r["val_loss"] for r in seen]], [lrs]
    e = at["step"]
    if probe_len and math.isfinite(out["cooldown"]):
        floor, current = lrs[-1], lrs[e - 1]
        probe_lrs = np.concatenate([lrs[:e], probe_multipliers(current / lrs.max(), floor / lrs.max(), probe_len)
                                    * lrs.max()])
        with_probe = (runs_steps + [[e + probe_len]], runs_losses + [[out["cooldown"]]], runs_lrs + [probe_lrs])
    else:
        with_probe = None
    for variant in VARIANTS:
        prior = prior_cv if variant.startswith("cv") else default_prior(lrs)
        data = with_probe if variant.endswith("probe") else (runs_steps, runs_losses, runs_lrs)
        if len(seen) < MIN_FIT_POINTS or data is None:
            out[variant] = math.nan
            continue
        try:
            law = fit(data[0], data[1], data[2], [w] * len(data[0]), init=prior, prior_strength=PRIOR_STRENGTH)
            out[variant] = float(law.final_loss(lrs, w))
        except (ValueError, np.linalg.LinAlgError) as err:
            print(f"  {variant} at {rung}: fit failed ({err})", flush=True)
            out[variant] = math.nan
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "rung_metrics_proving_ground.json")
    ap.add_argument("--rungs", type=int, nargs="+", default=[150, 300, 600])
    ap.add_argument("--min-step", type=int, default=150, help="the cv prior's fit uses eval steps from here on")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    started = time.perf_counter()
    shapes, cfg = load_runs(args.runs)
    seeds = sorted(set.intersection(*(set(s["seeds"]) for s in shapes.values())))
    priors = cv_priors(shapes, seeds, args.min_step)
    plan = plan_probes(tuple(args.rungs), cfg.eval.interval, cfg.total_steps(), cfg.eval.probe_frac)
    table: dict[str, dict[int, dict[int, dict[str, float]]]] = {}
    for name, shape in shapes.items():
        for rung in args.rungs:
            e = min(math.ceil(rung / cfg.eval.interval) * cfg.eval.interval, cfg.total_steps())
            for seed in seeds:
                table.setdefault(name, {}).setdefault(rung, {})[seed] = predictions(
                    shape["seeds"][seed], shape["lrs"], rung, plan.get(e, 0), priors[name])
    warm = [n for n in shapes if infer_warmup_steps(shapes[n]["lrs"]) > 0]
    metrics = ("raw", "cooldown", *VARIANTS)
    summary = []
    print(f"{len(shapes)} shapes x {len(seeds)} seeds, rungs {args.rungs}, {time.perf_counter() - started:.0f} s")
    print("| rung | shapes | " + " | ".join(metrics) + " |")
    print("| --- | --- |" + " --- |" * len(metrics))
    for rung in args.rungs:
        for label, names in (("all", list(shapes)), ("with a warmup", warm)):
            mean = {m: [float(np.mean([table[n][rung][s][m] for s in seeds])) for n in names] for m in metrics}
            final = [float(np.mean([table[n][rung][s]["final"] for s in seeds])) for n in names]
            row = {"rung": rung, "shapes": label, "n": len(names),
                   "spearman": {m: spearman(mean[m], final)[0] for m in metrics},
                   "mae": {v: float(np.nanmean(np.abs(np.subtract(mean[v], final)))) for v in VARIANTS}}
            summary.append(row)
            print(f"| {rung} | {label} ({len(names)}) | "
                  + " | ".join(f"{row['spearman'][m]:.3f}" for m in metrics) + " |")
    print("\nMean absolute error of each `predicted` (seed means) against the final loss, nats:")
    for row in summary:
        print(f"  rung {row['rung']}, {row['shapes']}: "
              + ", ".join(f"{v} {row['mae'][v]:.3f}" for v in VARIANTS))
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        "command": " ".join(sys.argv), "seeds": seeds, "summary": summary,
                                        "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
