"""The training loop on 2 real gloo ranks: scheduled LRs, learning, exact resume, divergence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from test_train_helpers import make_markov_shards, run_ranks, tiny_config_dict
from trainable.config import TrainConfig
from trainable.train import Report, train

pytestmark = pytest.mark.ddp


class Recorder:
    """Hooks that keep every report; optionally stop the run (by raising) once a step is reported."""

    def __init__(self, stop_at: int | None = None):
        self.reports: list[Report] = []
        self.stop_at = stop_at

    def on_report(self, report: Report) -> None:
        self.reports.append(report)
        if self.stop_at is not None and report.step >= self.stop_at:
            raise _Stop()


class _Stop(Exception):
    pass


def _as_json(reports: list[Report]) -> list[dict]:
    return [{"step": r.step, "tokens": r.tokens, "metrics": r.metrics, "ckpt": r.checkpoint_dir, "final": r.final}
            for r in reports]


# Worker functions run in the spawned ranks (module level so they can be pickled by reference).


def _train_worker(rank: int, cfg_dict: dict, resume_from: str | None) -> dict:
    hooks = Recorder()
    result = train(TrainConfig.from_dict(cfg_dict), hooks=hooks, resume_from=resume_from)
    return {
        "status": result.status, "step": result.step, "lrs": result.lrs,
        "train_losses": result.train_losses, "reports": _as_json(hooks.reports),
    }


def _interrupted_worker(rank: int, cfg_dict: dict, stop_at: int) -> dict:
    hooks = Recorder(stop_at=stop_at)
    try:
        train(TrainConfig.from_dict(cfg_dict), hooks=hooks)
    except _Stop:
        pass
    return {"reports": _as_json(hooks.reports)}


def _allreduce_count_worker(rank: int, data: str) -> dict:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from trainable.distributed import setup_distributed
    from trainable.train import Trainer

    counts = {}
    for accum in (1, 3):
        cfg = TrainConfig.from_dict(tiny_config_dict(Path(data), batch={"micro_batch_size": 2, "seq_len": 32,
                                                                         "grad_accum": accum}))
        trainer = Trainer(cfg, setup_distributed("cpu"), hooks=None)
        calls = []

        def counting_hook(state, bucket):
            calls.append(bucket.index())
            return allreduce_hook(state, bucket)

        trainer.ddp.register_comm_hook(None, counting_hook)
        for _ in range(2):
            trainer.train_step()
        counts[accum] = len(calls)
    return counts


# ---------------------------------------------------------------------------------------------------------


def test_gradient_accumulation_all_reduces_only_on_the_last_micro_step(tmp_path: Path) -> None:
    data = make_markov_shards(tmp_path / "data")
    counts = run_ranks(_allreduce_count_worker, (str(data),), tmp_path / "out")[0]
    # 3 micro-steps per optimizer step cost exactly the gradient all-reduces of 1.
    assert counts["1"] > 0 and counts["3"] == counts["1"]


def test_two_ranks_apply_the_scheduled_lr_learn_and_report_identically(tmp_path: Path) -> None:
    data = make_markov_shards(tmp_path / "data")
    cfg_dict = tiny_config_dict(data)
    cfg = TrainConfig.from_dict(cfg_dict)
    ranks = run_ranks(_train_worker, (cfg_dict, None), tmp_path / "out")

    T = cfg.total_steps(2)
    expected_lrs = [cfg.optimizer.lr * float(m) for m in cfg.build_schedule().multipliers(T)]
    for r in ranks:
        assert r["status"] == "finished" and r["step"] == T
        # What the optimizer itself saw at each step (recorded by a step pre-hook), exactly.
        assert r["lrs"] == expected_lrs
    # Every rank reports the same, all-reduced values.
    assert ranks[0]["reports"] == ranks[1]["reports"]
    reports = ranks[0]["reports"]
    assert [rep["step"] for rep in reports] == [4, 8, 12]
    assert [rep["final"] for rep in reports] == [False, False, True]
    assert reports[-1]["metrics"]["status"] == "finished"
    assert all("status" not in rep["metrics"] for rep in reports[:-1])
    tokens_per_step = 4 * 32 * 2 * 2  # micro batch x seq_len x grad_accum x ranks
    assert [rep["tokens"] for rep in reports] == [4 * tokens_per_step, 8 * tokens_per_step, 12 * tokens_per_step]
    for rep in reports:
        m = rep["metrics"]
        for name in ("step", "tokens", "lr", "lr_multiplier", "train_loss", "val_loss", "val_bpb",
                     "tokens_per_s", "elapsed_s"):
            assert name in m, name
        assert math.isfinite(m["val_bpb"]) and m["val_bpb"] > 0
        assert m["tokens_per_s"] > 0
        assert "mfu" not in m  # CPU: no known peak, so no made-up MFU
        assert m["lr"] == expected_lrs[rep["step"] - 1]
    assert reports[-1]["metrics"]["val_loss"] < reports[0]["metrics"]["val_loss"] - 0.5
    assert reports[0]["metrics"]["val_loss"] < math.log(50257)  # it learned something by step 4 already


def test_resumed_run_reproduces_the_uninterrupted_losses_exactly(tmp_path: Path) -> None:
    data = make_markov_shards(tmp_path / "data")
    full_dict = tiny_config_dict(data, checkpoint={"dir": str(tmp_path / "ckpt_full"), "every": 1, "keep": 1})
    full = run_ranks(_train_worker, (full_dict, None), tmp_path / "out_full")[0]

    # Same run, stopped right after the checkpoint at step 8 = 2T/3 (a killed worker, as Ray would see it).
    part_dict = tiny_config_dict(data, checkpoint={"dir": str(tmp_path / "ckpt_part"), "every": 1, "keep": 2})
    part = run_ranks(_interrupted_worker, (part_dict, 8), tmp_path / "out_part")
    assert part[0]["reports"] == part[1]["reports"]
    stopped_at = part[0]["reports"][-1]
    assert stopped_at["step"] == 8 and stopped_at["ckpt"] is not None
    ckpt = Path(stopped_at["ckpt"])
    assert ckpt.name == "step_00000008" and sorted(p.name for p in ckpt.iterdir()) == [
        "meta.json", "model.pt", "optimizer.pt", "rank0.pt", "rank1.pt"]

    resumed = run_ranks(_train_worker, (part_dict, str(ckpt)), tmp_path / "out_resumed")
    assert resumed[0]["reports"] == resumed[1]["reports"]
    r = resumed[0]
    assert r["status"] == "finished" and r["step"] == 12
    # Every logged loss: per-step train losses after the restart, and the eval reports, exactly equal.
    assert r["train_losses"] == full["train_losses"][8:]
    assert r["lrs"] == full["lrs"][8:]
    strip = lambda m: {k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed_s")}  # noqa: E731
    before = [strip(rep["metrics"]) for rep in part[0]["reports"]]
    after = [strip(rep["metrics"]) for rep in r["reports"]]
    assert before + after == [strip(rep["metrics"]) for rep in full["reports"]]
    # keep: 1 left only the newest checkpoint of the full run.
    assert sorted(p.name for p in (tmp_path / "ckpt_full").iterdir()) == ["step_00000012"]


def test_divergence_ends_the_run_cleanly_on_every_rank(tmp_path: Path) -> None:
    data = make_markov_shards(tmp_path / "data")
    cfg_dict = tiny_config_dict(
        data,
        optimizer={"lr": 50.0, "grad_clip": 0.0},  # absurd on purpose
        divergence={"margin": 1.0},
        horizon={"steps": 40},
        eval={"interval": 20, "max_tokens": 2048},
    )
    ranks = run_ranks(_train_worker, (cfg_dict, None), tmp_path / "out")
    assert ranks[0]["reports"] == ranks[1]["reports"]
    for r in ranks:
        assert r["status"] == "diverged"
        assert r["step"] < 40
        last = r["reports"][-1]
        assert last["final"] and last["metrics"]["status"] == "diverged"
        assert last["step"] == r["step"] == len(r["train_losses"])
    # The first step over the limit (or not finite) stopped the run, at most one step later: the loss
    # all-reduce is read with one step of lag so that it never stalls training.
    losses = ranks[0]["train_losses"]
    tripped = next(i for i, loss in enumerate(losses) if not loss <= losses[0] + 1.0)
    assert tripped >= len(losses) - 2
