"""Not a test: a function trainable reporting results in the group-trial format (contract "Sweep trials").

It is a test fixture standing in for the GPT group trial: real Tune, real checkpoints, real restores, but
losses from a formula so tests can recompute every value logged to MLflow. Importable by Ray workers
through PYTHONPATH (the tests put this folder on it).

Trial config keys: the contract's `schedule`, `baseline`, `seeds`, plus `fixture`:
`{"bias": float, "total_steps": int, "eval_every": int, "diverge_seed": seed or None,
"pause_marker": path or None}`. A group whose `diverge_seed` is set diverges at its second eval step.
With `pause_marker`, the first attempt creates the marker after its second eval and then waits to be
killed; a restored attempt finds the marker and carries on.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

DIVERGED_PENALTY = 20.0


def seed_val_loss(step: int, seed: int, bias: float) -> float:
    """The fixture's val_loss of one seed: falls with steps; seeds differ by 0.01 nats."""
    return 3.0 + bias + 5.0 / (1.0 + step / 10.0) + 0.01 * seed


def seed_metrics(step: int, seed: int, bias: float, lr_multiplier: float) -> dict[str, Any]:
    val_loss = seed_val_loss(step, seed, bias)
    return {"val_loss": val_loss, "val_bpb": val_loss / math.log(2) / 4.0, "train_loss": val_loss + 0.05,
            "lr": 6e-4 * lr_multiplier, "tokens_per_s": 1000.0 + seed, "mfu": 0.01, "step": step,
            "status": "running", "train_run": f"fixture-seed{seed}"}


def group_trainable(config: dict[str, Any]) -> None:
    """Report one group result per eval step, with a checkpoint holding the step reached."""
    from search_spaces import schedule_from_dict

    fx = config["fixture"]
    total, every, bias = fx["total_steps"], fx["eval_every"], fx["bias"]
    schedule = schedule_from_dict(config["schedule"])
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.loads((Path(d) / "state.json").read_text())["step"]
    for step in range(start + every, total + 1, every):
        mult = schedule.multiplier(min(step, total - 1), total)
        per_seed = {str(s): seed_metrics(step, s, bias, mult) for s in config["seeds"]}
        status = "finished" if step == total else "running"
        diverging = fx.get("diverge_seed") is not None and step == 2 * every
        if diverging:
            bad = per_seed[str(fx["diverge_seed"])]
            bad.update(status="diverged", val_loss=DIVERGED_PENALTY)
            status = "diverged"
        for s in per_seed.values():
            if status == "finished":
                s["status"] = "finished"
        n = len(per_seed)
        result = {
            "step": step, "tokens": step * 1024,
            "val_loss": math.fsum(s["val_loss"] for s in per_seed.values()) / n,
            "val_bpb": math.fsum(s["val_bpb"] for s in per_seed.values()) / n,
            "train_loss": math.fsum(s["train_loss"] for s in per_seed.values()) / n,
            "lr": 6e-4 * mult, "lr_multiplier": mult,
            "tokens_per_s": math.fsum(s["tokens_per_s"] for s in per_seed.values()), "mfu": 0.01,
            "status": status, "per_seed": per_seed,
        }
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "state.json").write_text(json.dumps({"step": step}))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
        if diverging:
            return
        marker = fx.get("pause_marker")
        if marker and step == 2 * every:
            try:
                with open(marker, "x") as f:  # atomic: exactly one group of the sweep pauses
                    f.write("paused")
            except FileExistsError:
                continue
            time.sleep(600)  # the test kills the driver meanwhile
