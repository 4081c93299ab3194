"""What one result's MLflow writes cost the sweep driver, written the ways the MLflow callback could write them.

    python benchmarks/mlflow_log_batch.py [--runs 30] [--steps 10] [--repeats 3] [--out FILE]

Each variant logs `--steps` results to each of `--runs` runs of a fresh sqlite store (the default store of a
sweep), one `log_batch` of the 8 seed metrics per run per result, as `sweep.tracking.callback` does:

- `sync+tag`: synchronous, with a per-step tag in every batch (the callback up to 2026-12-07);
- `sync`: synchronous, metrics only (the callback now);
- `sync+wal`: the same on a store switched to sqlite's write-ahead log (`PRAGMA journal_mode=WAL`, kept in the
  file), so a commit appends to one log instead of writing a rollback journal and the database;
- `async1`: MLflow's own asynchronous logging (`log_batch(..., synchronous=False)`) with one logging thread,
  waited for at the end;
- `async10`: the same with MLflow's default thread pool (10).

For each: the wall time the caller spends submitting (what Tune's loop thread would spend), the wall time until
every write is in the store, and the process's CPU time over both. The variants run alternated, each repeat in
a fresh process and store, so load drifts hit them alike. Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("sync+tag", "sync", "sync+wal", "async1", "async10")
METRICS = ("train_loss", "val_loss", "val_bpb", "lr", "tokens_per_s", "mfu", "val_loss_cooldown", "step_time")


def one(variant: str, runs: int, steps: int) -> dict:
    """Run one variant in this process (a fresh store in a temporary folder)."""
    os.environ["MLFLOW_ASYNC_LOGGING_THREADPOOL_SIZE"] = "1" if variant == "async1" else "10"
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        exp = client.create_experiment("bench")
        if variant == "sync+wal":
            with sqlite3.connect(f"{folder}/mlflow.db") as db:
                db.execute("PRAGMA journal_mode=WAL")
        run_ids = [client.create_run(exp).info.run_id for _ in range(runs)]
        futures = []
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for step in range(1, steps + 1):
            for run_id in run_ids:
                now = int(time.time() * 1000)
                metrics = [Metric(name, 1.0 / step, now, step) for name in METRICS]
                tags = [RunTag("schedsweep.last_step", str(step))] if variant == "sync+tag" else []
                if variant.startswith("async"):
                    futures.append(client.log_batch(run_id, metrics=metrics, tags=tags, synchronous=False))
                else:
                    client.log_batch(run_id, metrics=metrics, tags=tags)
        submitted = time.perf_counter()
        for future in futures:
            future.wait()
        done, cpu = time.perf_counter(), time.process_time()
        logged = len(client.get_metric_history(run_ids[-1], "val_loss"))
    if logged != steps:
        raise SystemExit(f"{variant}: {logged} of {steps} steps in the store")
    n = runs * steps
    return {"variant": variant, "batches": n, "submit_ms_per_batch": (submitted - wall0) / n * 1e3,
            "done_ms_per_batch": (done - wall0) / n * 1e3, "cpu_ms_per_batch": (cpu - cpu0) / n * 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in a child process
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.variant:
        print(json.dumps(one(args.variant, args.runs, args.steps)), flush=True)
        return 0
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--runs", str(args.runs),
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {k: statistics.median(r[k] for r in mine)
                            for k in ("submit_ms_per_batch", "done_ms_per_batch", "cpu_ms_per_batch")}
    print(f"{started}, load {load:.1f} at start, {platform.node()}, {os.cpu_count()} cpus; medians of "
          f"{args.repeats} (ms per batch):")
    for variant, s in summary.items():
        print(f"  {variant:9s} submit {s['submit_ms_per_batch']:6.2f}  all written {s['done_ms_per_batch']:6.2f}  "
              f"cpu {s['cpu_ms_per_batch']:6.2f}")
    if args.out:
        args.out.write_text(json.dumps({"started": started, "load": load, "args": vars(args) | {"out": str(args.out)},
                                        "rows": rows, "medians": summary}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
