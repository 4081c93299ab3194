"""The GPU check: run once whenever a GPU machine is at hand, put its JSON's figures in BENCHMARKS.md.

    python benchmarks/gpu_check.py --out gpu_check.json          # one H100/H200: GPT-2 124M, ~5-8 minutes
    python benchmarks/gpu_check.py --dry-run --out dry.json       # every step at tiny size on CPU (CI)

Steps, each timed and each in the JSON even when it fails (its error instead of its figures), so a broken
step never hides the others:

1. `env`: torch and CUDA versions, the device, bf16 support, whether the flash SDPA kernel is enabled.
2. `throughput`: GPT-2 124M on random tokens, one process. Side by side, alternated `--repeats` times:
   - `trainer`: the project's trainer (`trainable.train.train`) with bf16 autocast, `torch.compile`, fused
     AdamW and SDPA attention (flash on H100/H200), tokens/s and MFU from its own meter;
   - `plain`: a plain PyTorch loop of the same model, batch and data (eager, bf16 autocast, fused AdamW);
   and the ratio trainer / plain. Peak GPU memory of the trainer's run.
3. `sweep`: `sweep run` of a 2-group sweep (baselines `constant` and `wsd_sqrt`, one seed, one GPU per seed
   run) end to end: wall time, each group's time to its first result (start-up + first eval interval) and
   its total, from Tune's result files.
4. `nanogpt`: the nanoGPT-style test double (tests/fixtures/nanogpt_double) with the diff of
   docs/bring-your-own-trainer.md applied, on the GPU: its DDP branch alone with the device and backend the
   launcher sets (`cuda:0`, NCCL), then a one-group sweep of it through the `script:` backend with one GPU.
The dry run does the same with the `tiny` model on CPU in fp32 and without `torch.compile` (CPU inductor
needs a C++ toolchain and minutes), so CI proves the script's plumbing, not GPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from trainable.config import TrainConfig  # noqa: E402
from trainable.throughput import peak_flops  # noqa: E402
from trainable.train import train  # noqa: E402
from trainable.data.shards import write_shard  # noqa: E402
from trainer_throughput import plain_loop  # noqa: E402

# (model, micro batch, seq len, steps) per mode: a GPU run long enough for a steady tokens/s after compile;
# the dry run's model has a 512-id vocabulary, as a GPT-2-wide head would make even `tiny` slow on a CPU.
SIZES = {"gpu": ("gpt2-124m", 16, 1024, 150), "dry": ({"name": "tiny", "vocab_size": 512}, 4, 64, 20)}
VOCAB = {"gpu": 50257, "dry": 512}


def make_data(folder: Path, tokens: int, vocab: int) -> Path:
    """Random ids: throughput does not care what the tokens mean, only that both loops read the same."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_shard(folder / "train_000.bin", rng.integers(0, vocab, size=tokens))
    write_shard(folder / "val_000.bin", rng.integers(0, vocab, size=20_000))
    return folder


def step(name: str, fn: Callable[[], dict[str, Any]], out: dict[str, Any]) -> None:
    """Run one step; its figures, or its error, go into `out[name]` with its seconds."""
    started = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as err:  # noqa: BLE001 - a failed step is reported, and the next one still runs
        out[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    out[name]["seconds"] = round(time.perf_counter() - started, 1)
    print(f"gpu_check: {name} done in {out[name]['seconds']} s{' (FAILED)' if 'error' in out[name] else ''}",
          flush=True)


def env_info() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "cuda": cuda}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                    flash_sdp_enabled=torch.backends.cuda.flash_sdp_enabled(), device_count=torch.cuda.device_count())
    else:
        info.update(device=f"CPU ({os.cpu_count()} cores)")
    return info


def throughput(data: Path, dry: bool, repeats: int) -> dict[str, Any]:
    model, micro, seq, steps = SIZES["dry" if dry else "gpu"]
    cuda = torch.cuda.is_available() and not dry
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    cfg = TrainConfig.from_dict({
        "model": model, "data": {"dir": str(data)}, "schedule": {"preset": "constant"},
        "optimizer": {"lr": 1e-4}, "horizon": {"steps": steps},
        "batch": {"micro_batch_size": micro, "seq_len": seq, "grad_accum": 1},
        "eval": {"interval": steps, "max_tokens": micro * seq * 2}, "divergence": {"margin": None},
        "device": "cuda" if cuda else "cpu", "compile": cuda, "dtype": "auto",
    })
    if cuda:
        torch.cuda.set_device(device)
    rows = []
    peak_mem = None
    for rep in range(repeats):
        order = ("plain", "trainer") if rep % 2 == 0 else ("trainer", "plain")
        row: dict[str, Any] = {"repeat": rep}
        for which in order:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            if which == "plain":
                row["plain_tokens_per_s"] = plain_loop(cfg, 0, 1, device)
            else:
                result = train(cfg)
                row["trainer_tokens_per_s"] = result.final_metrics["tokens_per_s"]
                row["trainer_mfu"] = result.final_metrics.get("mfu")
                if cuda:
                    peak_mem = max(peak_mem or 0, torch.cuda.max_memory_allocated(device))
        rows.append(row)
    from trainable.model import GPT

    flops = GPT(cfg.model.gpt).flops_per_token(seq)
    peak = peak_flops(device)
    best = {k: max(r[k] for r in rows) for k in ("plain_tokens_per_s", "trainer_tokens_per_s")}
    return {
        "model": cfg.model.name, "micro_batch": micro, "seq_len": seq, "steps": steps, "compile": cuda,
        "dtype": "bfloat16" if cuda else "float32", "runs": rows,
        "trainer_tokens_per_s": best["trainer_tokens_per_s"], "plain_tokens_per_s": best["plain_tokens_per_s"],
        "ratio_trainer_over_plain": best["trainer_tokens_per_s"] / best["plain_tokens_per_s"],
        "trainer_mfu": max((r["trainer_mfu"] for r in rows if r.get("trainer_mfu") is not None), default=None),
        "plain_mfu": best["plain_tokens_per_s"] * flops / peak if peak else None,
        "peak_memory_gib": round(peak_mem / 2**30, 2) if peak_mem else None,
    }


def run_sweep_cli(cfg: dict[str, Any], folder: Path, env: dict[str, str] | None = None, timeout_s: int = 900) -> float:
    """`sweep run` of `cfg` as a user runs it, in `folder` (created if missing), with `env` added to the
    environment; its wall time in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg['name']}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path)], cwd=folder, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"sweep run exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def gpu_sweep(data: Path, dry: bool, folder: Path) -> dict[str, Any]:
    model, micro, seq, _ = SIZES["dry" if dry else "gpu"]
    steps = 20 if dry else 200
    cuda = torch.cuda.is_available() and not dry
    cfg = {
        "name": "gpucheck",
        "trainer": {"model": model, "data": {"dir": str(data)}, "optimizer": {"lr": 6e-4},
                    "horizon": {"steps": steps}, "batch": {"micro_batch_size": micro, "seq_len": seq},
                    "eval": {"interval": steps // 2, "max_tokens": micro * seq * 4},
                    "checkpoint": {"every": 1, "keep": 1}, "device": "cuda" if cuda else "cpu", "compile": cuda},
        "search_space": "wsd", "baselines": ["constant", "wsd_sqrt"], "seeds": [0], "budget": 0,
        "scheduler": {"enabled": False},
        "resources": {"workers": 1, "use_gpu": cuda, "cpus_per_worker": 1 if cuda else 0.5},
        "max_concurrent_trials": 1, "storage": str(folder / "sweeps"),
    }
    wall = run_sweep_cli(cfg, folder)
    groups = []
    for trial in sorted((folder / "sweeps" / "gpucheck" / "tune").glob("*/result.json")):
        results = [json.loads(line) for line in trial.read_text().splitlines() if line.strip()]
        groups.append({"first_result_s": round(results[0]["time_total_s"], 1),
                       "total_s": round(results[-1]["time_total_s"], 1), "status": results[-1]["status"],
                       "val_loss": results[-1]["val_loss"], "tokens_per_s": results[-1].get("tokens_per_s")})
    if len(groups) != 2 or any(g["status"] != "finished" for g in groups):
        raise RuntimeError(f"expected 2 finished groups, got {groups}")
    return {"model": cfg["trainer"]["model"], "steps": steps, "wall_s": round(wall, 1), "groups": groups}


def nanogpt_double(dry: bool, folder: Path) -> dict[str, Any]:
    """The docs' change to a nanoGPT-style script, on the GPU (CPU and gloo in the dry run)."""
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "sweep" / "engine")]
    from test_nanogpt_double import HORIZON, SMALL, make_double

    script = make_double(folder / "nanogpt", True)
    cuda = torch.cuda.is_available() and not dry
    device = "cuda:0" if cuda else "cpu"
    args = [a for a in SMALL if not a.startswith("--device=")] + [f"--device={'cuda' if cuda else 'cpu'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29733",
           "SCHEDSWEEP_DEVICE": device, "SCHEDSWEEP_DIST_BACKEND": "nccl" if cuda else "gloo"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args, "--max_iters=8", "--eval_interval=4",
                           "--lr-schedule", "wsd_sqrt"], cwd=script.parent, capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0 or "step 8:" not in proc.stdout:
        raise RuntimeError(f"the DDP branch exited {proc.returncode}: {proc.stderr[-2000:]}")
    ddp_s = time.perf_counter() - started
    cfg = {
        "name": "nanogptcheck",
        "script": {"path": str(script), "horizon_steps": HORIZON, "timeout_s": 300,
                   "args": [*args, "--max_iters={horizon_steps}", "--eval_interval=4", "--out_dir={run_dir}/out"],
                   "env": {"OMP_NUM_THREADS": "1"}},
        "search_space": "wsd", "baselines": ["nanogpt_cosine"], "seeds": [0], "budget": 0,
        "scheduler": {"enabled": False},
        "resources": {"workers": 1, "use_gpu": cuda, "cpus_per_worker": 1 if cuda else 0.5},
        "max_concurrent_trials": 1, "storage": str(folder / "sweeps"),
    }
    wall = run_sweep_cli(cfg, folder)
    (trial,) = (folder / "sweeps" / "nanogptcheck" / "tune").glob("*/result.json")
    last = json.loads(trial.read_text().splitlines()[-1])
    if last["status"] != "finished" or last["step"] != HORIZON:
        raise RuntimeError(f"the script's group did not finish: {last}")
    return {"device": device, "ddp_branch_s": round(ddp_s, 1), "sweep_wall_s": round(wall, 1),
            "val_loss": last["val_loss"], **{k: next(iter(last["per_seed"].values()))[k]
                                             for k in ("seed_read", "schedule_read")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny model on CPU: every step, no GPU figures")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": args.dry_run,
                              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp:
        mode = "dry" if args.dry_run else "gpu"
        data = make_data(Path(tmp) / "data", 400_000 if args.dry_run else 5_000_000, VOCAB[mode])
        step("env", env_info, report)
        step("throughput", lambda: throughput(data, args.dry_run, args.repeats), report)
        step("sweep", lambda: gpu_sweep(data, args.dry_run, Path(tmp)), report)
        step("nanogpt", lambda: nanogpt_double(args.dry_run, Path(tmp)), report)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("runs", "traceback")} if isinstance(v, dict)
                      else v for k, v in report.items()}, indent=1))
    return 1 if any(isinstance(v, dict) and "error" in v for v in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
