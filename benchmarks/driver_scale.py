"""How the sweep driver scales: a simulated sweep of many groups, the driver's memory over time, and its share
of time in MLflow.

    python benchmarks/driver_scale.py [--groups 1000] [--out benchmarks/results/driver_scale.json]

One `sweep run` of the simulator backend as in the 200-group CI test: 2 baselines + TPE shapes, 2 seeds,
2,000 steps with a result every 500, ASHA on the cooldown rung metric (rungs at 500 and 1,000), 8 groups at
once, Optuna and MLflow on sqlite files. While it runs:

- the driver's resident memory (`VmRSS` of the `sweep run` process) and the groups started so far (Tune's
  trial folders) every 5 s;
- `py-spy record` samples the driver's Python stacks (active threads only, 20 Hz). The MLflow share is the
  fraction of those samples with an `mlflow` frame in the stack, on any thread; the callback's own share
  (`sweep/tracking/`) and the Tune loop's are given beside it. py-spy must be allowed to ptrace the driver
  (root, or `kernel.yama.ptrace_scope` 0).

The groups started per minute over the run show whether the driver slows down as the study grows (TPE
looks at every finished trial for every proposal; Tune's experiment state grows with the trials).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def config(folder: Path, groups: int) -> dict[str, Any]:
    return {
        "name": "scale",
        "simulator": {"law": "mpl_25m", "total_steps": 2000, "eval_interval": 500},
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine", "wsd_sqrt"],
        "seeds": [0, 1],
        "budget": groups - 2,
        "scheduler": {"grace_period": 500, "reduction_factor": 2, "rung_metric": "cooldown"},
        "resources": {"cpus_per_worker": 0.25},
        "max_concurrent_trials": 8,
        "storage": str(folder / "sweeps"),
        "optuna": {"storage": f"sqlite:///{folder}/optuna.db", "seed": 0},
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_driver(pid: int, tune_dir: Path, every_s: float, out: list[tuple[float, float, int]],
                  started: float) -> None:
    """(seconds, driver RSS in MB, groups started so far: Tune's trial folders) every `every_s` while it runs."""
    while (mb := rss_mb(pid)) is not None:
        groups = sum(1 for p in tune_dir.glob("*") if p.is_dir()) if tune_dir.is_dir() else 0
        out.append((round(time.monotonic() - started, 1), round(mb, 1), groups))
        time.sleep(every_s)


def stack_shares(raw: Path) -> dict[str, Any]:
    """Shares of py-spy's collapsed samples (`frame;frame;... count` per line) by what their stacks hold."""
    total = unparsed = 0
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():  # a frame name with a line break in it continues on the next line
            unparsed += bool(stack)
            continue
        k = int(n)
        total += k
        if "mlflow" in stack:
            counts["mlflow"] += k
        if "sweep/tracking/" in stack:
            counts["sweep_tracking"] += k
        if "optuna" in stack:
            counts["optuna"] += k
        if "sqlalchemy" in stack and "mlflow" not in stack:
            counts["sqlalchemy_not_mlflow"] += k
    shares = {k: v / total for k, v in counts.items()} if total else {}
    return {"samples": total, "unparsed_lines": unparsed, **shares}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--stacks", type=Path, default=None,
                        help="keep py-spy's collapsed stacks here (~10 MB for 1,000 groups; flame-graph tools read them)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "driver_scale.json")
    args = parser.parse_args()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
                           "cpus": os.cpu_count(), "load_before": os.getloadavg(), "command": " ".join(sys.argv),
                           "groups": args.groups, "mlflow_async": os.environ.get("MLFLOW_ENABLE_ASYNC_LOGGING")}
    with tempfile.TemporaryDirectory(prefix="driver-scale-") as tmp:
        folder = Path(tmp)
        path = folder / "scale.yaml"
        path.write_text(yaml.safe_dump(config(folder, args.groups)))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.monotonic()
        with open(folder / "sweep.out", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(path)], cwd=folder, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
            memory: list[tuple[float, float, int]] = []
            sampler = threading.Thread(target=sample_driver, daemon=True,
                                       args=(proc.pid, folder / "sweeps" / "scale" / "tune", 5.0, memory, started))
            sampler.start()
            spy = None
            raw = folder / "driver.raw"
            pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
            if not args.no_profile and pyspy:
                spy = subprocess.Popen([pyspy, "record", "--pid", str(proc.pid), "--rate", "20", "--format", "raw",
                                        "--output", str(raw), "--threads", "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rc = proc.wait()
            out["wall_s"] = time.monotonic() - started
        if spy is not None:
            spy.wait(timeout=120)  # py-spy writes its file once the driver has exited
        text = (folder / "sweep.out").read_text()
        if rc != 0:
            print(text[-5000:])
            raise SystemExit(f"sweep run exited {rc}")
        out["memory_mb"] = memory
        if raw.exists() and args.stacks is not None:
            shutil.copy(raw, args.stacks)
        out["profile"] = stack_shares(raw) if raw.exists() else None
        out["trials"] = len(list((folder / "sweeps" / "scale" / "tune").glob("*/result.json")))
        # Groups started per minute: does the driver slow down as the study grows?
        per_min: dict[int, int] = {}
        for t, _, groups in memory:
            per_min[int(t // 60)] = groups
        counts = [per_min[m] for m in sorted(per_min)]
        out["groups_started_per_minute"] = [b - a for a, b in zip([0] + counts[:-1], counts)]
        out["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "memory_mb"}, indent=1))
    print(f"(seconds, RSS MB, groups) first/last: {memory[:1]} {memory[-1:]}; written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
