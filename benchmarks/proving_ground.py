"""The proving ground's figures from real runs: how fast one seed run is, how far below the unigram entropy
it gets, the seed std of its final val loss, and what each baseline schedule is worth against `constant`.

    python benchmarks/proving_ground.py [--seeds 0 1 2] [--shapes constant nanogpt_cosine wsd_sqrt linear_to_zero]
                                        [--parallel 2] [--out benchmarks/proving_ground.json]

Every run is `sweep train --config configs/proving_ground_train.yaml --nproc 1` with the shape and seed set
on the command line (seed and data_seed both), `--parallel` runs at a time with one torch thread each, so
the two cores of a CI box run two seeds at once, as a sweep does. Paired differences (shape - constant per
seed) get a t interval (scipy); the unigram entropy is of the byte distribution of the train split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainable.data.bundled import ensure_bundled_data  # noqa: E402
from trainable.data.shards import list_shards, read_shard  # noqa: E402

EVAL = re.compile(r"^step (\d+)/\d+ \| train_loss \S+ \| val_loss (\S+) \|", re.MULTILINE)
DONE = re.compile(r"done: status (\w+) after \d+/\d+ steps, \d+ tokens; val_loss (\S+), val_bpb (\S+), (\S+)s")


def unigram_bits(folder: Path) -> float:
    """Entropy (bits per byte) of the train split's byte frequencies, EOT tokens left out."""
    counts = np.zeros(257, dtype=np.int64)
    for shard in list_shards(folder, "train"):
        counts += np.bincount(np.asarray(read_shard(shard)), minlength=257)
    p = counts[:256] / counts[:256].sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def one_run(shape: str, seed: int, threads: int, overrides: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "sweep.cli", "train", "--config", "configs/proving_ground_train.yaml", "--nproc", "1",
           "--set", f"schedule={{preset: {shape}}}", "--set", f"seed={seed}", "--set", f"data_seed={seed}",
           *[arg for item in overrides for arg in ("--set", item)]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    m = DONE.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"{shape} seed {seed} failed: {proc.stderr[-2000:]}")
    return {"shape": shape, "seed": seed, "status": m[1], "val_loss": float(m[2]), "val_bpb": float(m[3]),
            "train_s": float(m[4]), "wall_s": round(wall, 1),
            "curve": [[int(step), float(loss)] for step, loss in EVAL.findall(proc.stdout)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shapes", nargs="+", default=["constant", "nanogpt_cosine", "wsd_sqrt", "linear_to_zero"])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="passed on to every run (e.g. optimizer.lr=2e-3)")
    ap.add_argument("--out", default="benchmarks/proving_ground.json")
    args = ap.parse_args()
    folder = ensure_bundled_data(tokenizer="bytes")
    entropy = unigram_bits(folder)
    jobs = [(shape, seed) for seed in args.seeds for shape in args.shapes]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: one_run(*job, threads=max(1, (os.cpu_count() or 1) // args.parallel),
                                             overrides=args.overrides), jobs))
    by = {(r["shape"], r["seed"]): r for r in runs}
    summary = {}
    for shape in args.shapes:
        losses = np.array([by[(shape, s)]["val_loss"] for s in args.seeds])
        diffs = np.array([by[(shape, s)]["val_loss"] - by[("constant", s)]["val_loss"] for s in args.seeds])
        n = len(diffs)
        half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        summary[shape] = {
            "mean_val_loss": float(losses.mean()), "seed_std": float(losses.std(ddof=1)) if n > 1 else float("nan"),
            "mean_val_bpb": float(np.mean([by[(shape, s)]["val_bpb"] for s in args.seeds])),
            "minus_constant": float(diffs.mean()), "minus_constant_ci95": [float(diffs.mean()) - half, float(diffs.mean()) + half],
            "paired_std": float(diffs.std(ddof=1)) if n > 1 else float("nan"),
        }
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "unigram_bits_per_byte": entropy,
              "runs": runs, "summary": summary, "command": " ".join(sys.argv)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"unigram entropy of the train bytes: {entropy:.3f} bits")
    for shape, s in summary.items():
        print(f"{shape:16s} val_loss {s['mean_val_loss']:.4f} (seed std {s['seed_std']:.4f}, bpb {s['mean_val_bpb']:.3f}) "
              f"minus constant {s['minus_constant']:+.4f} [{s['minus_constant_ci95'][0]:+.4f}, "
              f"{s['minus_constant_ci95'][1]:+.4f}] paired std {s['paired_std']:.4f}")


if __name__ == "__main__":
    main()
