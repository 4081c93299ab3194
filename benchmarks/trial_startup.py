"""Where a seed group's start-up goes, and what the Tune-trial wrapper costs against a plain torchrun.

    python benchmarks/trial_startup.py [--groups 3] [--repeats 3] [--steps 400]
                                       [--out benchmarks/results/trial_startup.json]
    python benchmarks/trial_startup.py --part env-ab --env KEY=VALUE ... [--groups 3] [--repeats 3]

Both parts read wall-clock marks that the processes themselves write (`trainable.startup_trace`, switched on
by `SCHEDSWEEP_STARTUP_TRACE`): the driver when Tune starts a trial, the trial when it enters and when its
seed runs are launched, every Train worker its process start, its entry into the training function, model
and data built, and its first optimizer step, and rank 0 every report with its tokens/s.

1. Start-up breakdown: one `sweep run` of `--groups` baseline groups, one after another, each 2 seeds x 2 DDP
   workers (0.5 CPU each: the 2 cores of the machine), on the proving-ground model, no ASHA. For each group:
   Tune's start of the trial -> every seed's first optimizer step, split into its stages.
2. Wrapper overhead: the same trainer config (proving ground, 2 DDP ranks over gloo, checkpoints at every
   eval in both) as `torchrun --nproc-per-node 2 -m trainable.train` and as a one-group, one-seed sweep
   with 2 workers, alternated, `--repeats` times. Steady-state tokens/s is rank 0's reported rate after the
   first eval (the meter excludes evals and checkpoints); wall time is the whole command's, start-up is the
   command's start -> the last rank's first optimizer step.
3. `--part env-ab`: part 1's sweep without and with the `--env` settings (e.g. Ray Train's switches for its
   per-run helper actors), alternated `--repeats` times in one run, for a side-by-side start-up figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The benchmarks' one way to run a sweep config through the CLI (this script's folder is on sys.path).
from gpu_check import run_sweep_cli

from trainable import startup_trace
from trainable.config import load_yaml

TRAIN_CONFIG = REPO / "configs" / "proving_ground_train.yaml"


def trainer_section(steps: int) -> dict[str, Any]:
    """The proving ground's trainer config at `steps`, an eval every quarter, a checkpoint at every eval (its
    schedule is nanogpt_cosine: the sweeps below run that baseline)."""
    cfg = load_yaml(TRAIN_CONFIG)
    cfg["horizon"] = {"steps": steps}
    cfg["eval"] = {**cfg["eval"], "interval": steps // 4, "max_tokens": 16384}
    cfg["checkpoint"] = {"every": 1, "keep": 1}
    return cfg


def run_traced(cmd: list[str], cwd: Path, trace: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run `cmd` with tracing into `trace`; (its start as a Unix time, its wall time in seconds)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), startup_trace.ENV_VAR: str(trace), **(env or {})}
    started, t0 = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=1800,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return started, wall


def sweep_traced(cfg: dict[str, Any], folder: Path, trace: Path,
                 env: dict[str, str] | None = None) -> tuple[float, float]:
    """`sweep run` of `cfg` in `folder` with tracing into `trace` and `env` added to the environment; (its
    start as a Unix time, its wall time)."""
    started = time.time()
    return started, run_sweep_cli(cfg, folder, env={startup_trace.ENV_VAR: str(trace), **(env or {})},
                                  timeout_s=1800)


def sweep_config(name: str, folder: Path, steps: int, baselines: list[str], seeds: list[int], workers: int,
                 cpus_per_worker: float) -> dict[str, Any]:
    return {
        "name": name, "trainer": {k: v for k, v in trainer_section(steps).items() if k != "schedule"}, "search_space": "wsd", "baselines": baselines,
        "seeds": seeds, "budget": 0, "scheduler": {"enabled": False, "rung_metric": "raw"},
        "resources": {"workers": workers, "use_gpu": False, "cpus_per_worker": cpus_per_worker},
        "max_concurrent_trials": 1, "storage": str(folder / "sweeps"),
    }


# --- part 1 --------------------------------------------------------------------------------------------------
def by_pid(rows: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """{pid: {event: its first mark}} (reports excluded)."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["event"] != "report":
            out.setdefault(row["pid"], {}).setdefault(row["event"], row)
    return out


def group_breakdown(rows: list[dict[str, Any]], trial: str) -> dict[str, float]:
    """Seconds from Tune's start of `trial` to each stage, the slowest worker of the group setting the pace."""
    start = next(r["t"] for r in rows if r["event"] == "trial_started" and r["trial"] == trial)
    entered = next(r for r in rows if r["event"] == "group_entered" and r["trial"] == trial)
    launched = next(r["t"] for r in rows if r["event"] == "seeds_started" and r["trial"] == trial)
    workers = [marks for marks in by_pid(rows).values()
               if "train_fn_entered" in marks and marks["train_fn_entered"]["run"].startswith(f"{trial}-seed")]
    if not workers or any("first_step" not in w for w in workers):
        raise RuntimeError(f"trial {trial}: a worker has no first step in the trace")

    def last(event: str) -> float:
        return max(w[event]["t"] for w in workers) - start

    return {
        "trial_process_started": entered["process_started"] - start,
        "group_entered": entered["t"] - start,
        "seed_runs_launched": launched - start,
        "first_worker_process_started": min(w["train_fn_entered"]["process_started"] for w in workers) - start,
        "last_worker_process_started": max(w["train_fn_entered"]["process_started"] for w in workers) - start,
        "train_fn_entered": last("train_fn_entered"),
        "model_built": last("model_built"),
        "data_ready": last("data_ready"),
        "first_step": last("first_step"),
        "workers": len(workers),
        # CPU seconds the group's worker processes used, summed over them: up to their entry into the training
        # function (process start, imports, Ray Train's worker set-up, the process group), and from there to
        # the first optimizer step (model, optimizer, data, the step). Their sum over 2 cores is a floor for
        # this start-up on this machine, whatever the scheduling.
        "workers_cpu_to_train_fn_s": sum(w["train_fn_entered"]["cpu_s"] for w in workers),
        "workers_cpu_train_fn_to_first_step_s": sum(w["first_step"]["cpu_s"] - w["train_fn_entered"]["cpu_s"]
                                                    for w in workers),
        "workers_cpu_model_built_to_data_ready_s": sum(w["data_ready"]["cpu_s"] - w["model_built"]["cpu_s"]
                                                       for w in workers),
    }


def startup_breakdown(folder: Path, groups: int, steps: int, env: dict[str, str] | None = None,
                      name: str = "startup") -> dict[str, Any]:
    baselines = ["constant", "wsd_sqrt", "linear_to_zero", "nanogpt_cosine", "wsd_exp"][:groups]
    cfg = sweep_config(name, folder, steps, baselines, [0, 1], workers=2, cpus_per_worker=0.5)
    trace = folder / f"trace-{name}"
    started, wall = sweep_traced(cfg, folder, trace, env)
    rows = startup_trace.read(trace)
    trials = [r["trial"] for r in rows if r["event"] == "trial_started"]
    per_group = [{"trial": t, **group_breakdown(rows, t)} for t in trials]
    first_trial = min(r["t"] for r in rows if r["event"] == "trial_started")
    return {"wall_s": wall, "ray_and_driver_s": first_trial - started, "groups": per_group}


def startup_env_ab(folder: Path, groups: int, steps: int, repeats: int, env: dict[str, str]) -> dict[str, Any]:
    """The start-up sweep without and with `env`, alternated `repeats` times: every group's seconds from
    Tune's start to every seed's first step, and the median of each side."""
    sides: dict[str, list[float]] = {"without": [], "with": []}
    runs: list[dict[str, Any]] = []
    for r in range(repeats):
        for side in ("without", "with"):
            got = startup_breakdown(folder / f"{side}-{r}", groups, steps, env if side == "with" else None,
                                    name=f"ab{side}{r}")
            sides[side] += [g["first_step"] for g in got["groups"]]
            runs.append({"side": side, "repeat": r, **got})
            print(f"repeat {r} {side}: first step at " + ", ".join(f"{g['first_step']:.1f}" for g in got["groups"])
                  + f" s; sweep {got['wall_s']:.1f} s", flush=True)
    return {"env": env, "runs": runs, "first_step_s": sides,
            "median_first_step_s": {k: statistics.median(v) for k, v in sides.items()}}


# --- part 2 --------------------------------------------------------------------------------------------------
def run_figures(rows: list[dict[str, Any]], started: float, wall: float) -> dict[str, float]:
    reports = [r for r in rows if r["event"] == "report"]
    first_steps = [r["t"] for r in rows if r["event"] == "first_step"]
    if len(first_steps) != 2 or len(reports) < 3:
        raise RuntimeError(f"trace incomplete: {len(first_steps)} first steps, {len(reports)} reports")
    steady = [r["tokens_per_s"] for r in reports[1:]]
    return {
        "wall_s": wall,
        "startup_s": max(first_steps) - started,
        "training_s": reports[-1]["t"] - max(first_steps),
        "after_training_s": started + wall - reports[-1]["t"],
        "steady_tokens_per_s": statistics.fmean(steady),
    }


def wrapper_overhead(folder: Path, repeats: int, steps: int) -> dict[str, Any]:
    trainer = trainer_section(steps)
    runs: dict[str, list[dict[str, float]]] = {"torchrun": [], "sweep": []}
    for r in range(repeats):
        ckpt = folder / f"torchrun-{r}" / "checkpoints"
        ckpt.parent.mkdir(parents=True)
        cfg_path = folder / f"torchrun-{r}" / "train.yaml"
        cfg_path.write_text(json.dumps({**trainer, "schedule": {"preset": "nanogpt_cosine"}, "checkpoint": {**trainer["checkpoint"], "dir": str(ckpt)}}))
        trace = folder / f"trace-torchrun-{r}"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "trainable.train",
                    "--config", str(cfg_path)]
        # torchrun sets OMP_NUM_THREADS=1 per rank, Ray Train its CPUs per worker (1): the same threads.
        started, wall = run_traced(torchrun, REPO, trace, env={"OMP_NUM_THREADS": "1"})
        runs["torchrun"].append(run_figures(startup_trace.read(trace), started, wall))

        cfg = sweep_config(f"wrapper{r}", folder, steps, ["nanogpt_cosine"], [0], workers=2, cpus_per_worker=1)
        trace = folder / f"trace-sweep-{r}"
        started, wall = sweep_traced(cfg, folder, trace)
        runs["sweep"].append(run_figures(startup_trace.read(trace), started, wall))
        print(f"repeat {r}: torchrun {runs['torchrun'][-1]}, sweep {runs['sweep'][-1]}", flush=True)
    ratios = {
        "steady_tokens_per_s": [s["steady_tokens_per_s"] / t["steady_tokens_per_s"]
                                for s, t in zip(runs["sweep"], runs["torchrun"])],
        "wall": [s["wall_s"] / t["wall_s"] for s, t in zip(runs["sweep"], runs["torchrun"])],
        "training": [s["training_s"] / t["training_s"] for s, t in zip(runs["sweep"], runs["torchrun"])],
    }
    return {"runs": runs, "ratios_sweep_over_torchrun": ratios,
            "median_ratios": {k: statistics.median(v) for k, v in ratios.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=3, help="baseline groups in the start-up sweep (<= 5)")
    parser.add_argument("--repeats", type=int, default=3, help="torchrun / sweep pairs for the wrapper ratio")
    parser.add_argument("--steps", type=int, default=400, help="horizon of the wrapper runs")
    parser.add_argument("--startup-steps", type=int, default=100, help="horizon of the start-up groups")
    parser.add_argument("--part", choices=["both", "startup", "wrapper", "env-ab"], default="both",
                        help="env-ab: the start-up sweep without and with --env, alternated --repeats times")
    parser.add_argument("--env", nargs="+", default=[], metavar="KEY=VALUE",
                        help="environment for the `with` side of --part env-ab")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trial_startup.json")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_before": os.getloadavg(), "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory(prefix="trial-startup-") as tmp:
        if args.part in ("both", "startup"):
            out["startup"] = startup_breakdown(Path(tmp) / "startup", args.groups, args.startup_steps)
            print(json.dumps(out["startup"], indent=1), flush=True)
        if args.part == "env-ab":
            env = dict(kv.split("=", 1) for kv in args.env)
            out["env_ab"] = startup_env_ab(Path(tmp) / "env-ab", args.groups, args.startup_steps, args.repeats, env)
            print(json.dumps(out["env_ab"]["median_first_step_s"], indent=1), flush=True)
        if args.part in ("both", "wrapper"):
            out["wrapper"] = wrapper_overhead(Path(tmp) / "wrapper", args.repeats, args.steps)
            print(json.dumps(out["wrapper"]["median_ratios"], indent=1), flush=True)
    out["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
