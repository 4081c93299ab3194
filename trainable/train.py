"""The one training loop: DDP GPT pretraining with the LR from a schedule at every step.

Run it under torchrun:

    torchrun --nproc-per-node 2 -m trainable.train --config configs/tiny.yaml [--set optimizer.lr=1e-3]

or call `train(cfg, hooks, resume_from)` inside a process group someone else created (Ray Train). Each
optimizer step: set `lr = optimizer.lr * multipliers[step]`, run `grad_accum` micro-batches (gradients
all-reduced only on the last one), clip, step. Every `eval.interval` steps and at the last step: evaluate
with plain cross-entropy, optionally run a cooldown probe (`eval.probe_steps`, see
trainable.cooldown_probe), optionally checkpoint, and report identical values on every rank.
A non-finite or blown-up train loss ends the run on all ranks together with status `diverged`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from search_spaces.errors import ConfigError
from trainable.checkpoint import load_checkpoint, save_checkpoint
from trainable.config import TrainConfig, apply_overrides, load_yaml
from trainable.cooldown_probe import ProbeResult, plan_probes, run_probe
from trainable.distributed import (
    DistEnv,
    broadcast_object,
    is_distributed,
    setup_distributed,
    teardown_distributed,
)
from trainable.evaluation import EvalResult, evaluate
from trainable.losses import make_train_loss
from trainable.model import GPT
from trainable.optim import build_optimizer
from trainable.reporting import Hooks, Report, TrainResult
from trainable.startup_trace import mark
from trainable.throughput import ThroughputMeter, peak_flops

__all__ = ["Report", "TrainResult", "Hooks", "Trainer", "train", "main"]


def resolve_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """`auto`: bf16 autocast on CUDA, fp32 on CPU (CPU bf16 is slow and changes the numbers)."""
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32


def make_autocast(device: torch.device, dtype: torch.dtype) -> Callable[[], ContextManager]:
    if dtype == torch.float32:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def diverged(loss: float, nonfinite: bool, initial_loss: float | None, cfg: TrainConfig) -> bool:
    """The run has diverged: a non-finite loss anywhere, or a loss above the configured limits."""
    if nonfinite or loss != loss:
        return True
    div = cfg.divergence
    if div.max_loss is not None and loss > div.max_loss:
        return True
    return div.margin is not None and initial_loss is not None and loss > initial_loss + div.margin


def train(cfg: TrainConfig, hooks: Hooks | None = None, resume_from: str | Path | None = None) -> TrainResult:
    """Train per `cfg` on this process group (created from the environment if there is none).

    `resume_from`: a checkpoint folder (`step_*`) to continue from exactly. Returns this rank's
    `TrainResult`; status `finished` or `diverged` (a diverged run still returns normally).
    """
    env = setup_distributed(cfg.device)
    mark("process_group_ready", rank=env.rank, world_size=env.world_size)
    try:
        return Trainer(cfg, env, hooks).run(resume_from)
    finally:
        teardown_distributed(env)


class Trainer:
    """The state of one run, split into setup / step / eval so that `run` reads like the algorithm.

    `train()` is the way to use it; tests drive `train_step()` and `evaluate()` directly.
    """

    def __init__(self, cfg: TrainConfig, env: DistEnv, hooks: Hooks | None):
        from trainable.data.loader import TrainBatches
        from trainable.data.tokenizers import check_folder_vocab, tokenizer_of_folder

        self.cfg, self.env, self.hooks = cfg, env, hooks
        self.device = env.device
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.dtype = resolve_dtype(cfg, self.device)
        self.autocast = make_autocast(self.device, self.dtype)

        # Same seed on every rank: identical initial weights (DDP would broadcast rank 0's anyway).
        torch.manual_seed(cfg.seed)
        self.raw_model = GPT(cfg.model.gpt).to(self.device)
        mark("model_built", rank=env.rank)
        self.model: torch.nn.Module = torch.compile(self.raw_model) if cfg.compile else self.raw_model
        self.eval_model = self.model  # the compiled module without the DDP wrapper
        self.ddp: DDP | None = None
        if env.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.model, device_ids=device_ids)
            self.model = self.ddp
        self.optimizer = build_optimizer(self.raw_model, cfg.optimizer, self.device)
        self.loss_fn = make_train_loss(cfg.train_loss)

        self.total_steps = cfg.total_steps(env.world_size)
        self.multipliers = cfg.build_schedule().multipliers(self.total_steps)
        self.tokens_per_step = cfg.tokens_per_step(env.world_size)

        self.data_dir = cfg.data.resolve_dir()
        b = cfg.batch
        self.loader = TrainBatches(self.data_dir, b.micro_batch_size, b.seq_len, env.rank, env.world_size, cfg.data_seed)
        check_folder_vocab(cfg.model.gpt.vocab_size, self.data_dir)  # again: the folder may have changed since
        lengths = tokenizer_of_folder(self.data_dir).byte_lengths()
        self.byte_lengths = torch.as_tensor(lengths, dtype=torch.int64, device=self.device)
        mark("data_ready", rank=env.rank)

        self.meter = ThroughputMeter(
            self.raw_model.flops_per_token(b.seq_len), env.world_size, peak_flops(self.device, self.dtype)
        )
        self.applied_lrs: list[float] = []
        # What the optimizer itself sees when it steps: the record the LR test checks.
        self.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: self.applied_lrs.append(opt.param_groups[0]["lr"])
        )
        self.step = 0
        self.pending: list[tuple[torch.Tensor, dist.Work | None]] = []  # in-flight loss all-reduces
        self.initial_loss: float | None = None
        self.evals_done = 0
        # {eval step: probe length}; a function of the config, so a resumed run knows the probes behind it.
        ev = cfg.eval
        self.probe_plan = plan_probes(ev.probe_steps, ev.interval, self.total_steps, ev.probe_frac)
        self.probes: list[ProbeResult] = []  # the probes this process ran (tests read their LRs)
        self.probe_steps_run = 0  # extra optimizer steps spent on probes, resumed runs' earlier ones included

    # -----------------------------------------------------------------------------------------------------
    def run(self, resume_from: str | Path | None) -> TrainResult:
        if resume_from is not None:
            self._resume(Path(resume_from))
        result = TrainResult(
            status="finished", step=self.step, tokens=self.step * self.tokens_per_step,
            total_steps=self.total_steps, start_step=self.step, final_metrics={},
        )
        self.started = time.perf_counter()
        loss_sum, loss_steps = 0.0, 0  # train loss since the last report (Python float = float64)
        self.model.train()
        self.meter.resume()
        first_step = self.step + 1
        while self.step < self.total_steps:
            self.train_step()
            if self.step == first_step:
                mark("first_step", rank=self.env.rank, step=self.step)
            at_eval = self.step % self.cfg.eval.interval == 0 or self.step == self.total_steps
            # The newest step's loss may stay in flight (one step of lag) unless we report now.
            stop = False
            for loss, nonfinite in self.collect_losses(keep_newest=not at_eval):
                result.train_losses.append(loss)
                loss_sum, loss_steps = loss_sum + loss, loss_steps + 1
                if self.initial_loss is None:
                    self.initial_loss = loss
                stop = stop or diverged(loss, nonfinite, self.initial_loss, self.cfg)
            if stop:
                # Every rank sees the same all-reduced losses, so every rank stops at this same step.
                for loss, _ in self.collect_losses(keep_newest=False):
                    result.train_losses.append(loss)
                    loss_sum, loss_steps = loss_sum + loss, loss_steps + 1
                self.meter.pause()
                report = self._report(loss_sum / loss_steps, None, final=True, status="diverged")
                result.status = "diverged"
                result.reports.append(report)
                break
            if at_eval:
                self.meter.pause()
                final = self.step == self.total_steps
                report = self._eval_and_report(loss_sum / loss_steps, final)
                result.reports.append(report)
                loss_sum, loss_steps = 0.0, 0
                self.meter.resume()
        result.step = self.step
        result.tokens = self.step * self.tokens_per_step
        result.lrs = list(self.applied_lrs)
        if result.reports:
            result.final_metrics = dict(result.reports[-1].metrics)
            result.checkpoint_dir = next(
                (r.checkpoint_dir for r in reversed(result.reports) if r.checkpoint_dir), None
            )
        return result

    def train_step(self) -> None:
        """One optimizer step at the scheduled LR. Its loss arrives later through `collect_losses`."""
        loss_acc = self.optimizer_step(self.cfg.optimizer.lr * float(self.multipliers[self.step]))
        self.step += 1
        self.meter.add_tokens(self.tokens_per_step)
        # One small all-reduce per step: the loss for logging and a non-finite flag, so all ranks agree on
        # divergence. It runs asynchronously and is read a step later, so neither the host (waiting for the
        # GPU) nor a rank (waiting for its peer) stalls on it in the middle of training.
        stats = torch.stack([loss_acc, (~torch.isfinite(loss_acc)).double()])
        work = dist.all_reduce(stats, op=dist.ReduceOp.SUM, async_op=True) if is_distributed() else None
        self.pending.append((stats, work))

    def optimizer_step(self, lr: float) -> torch.Tensor:
        """Forward/backward over `grad_accum` micro-batches, clip, step at `lr`; this rank's loss (float64).

        The main run and the cooldown probe both step through here, so a probe step accumulates, syncs
        and clips exactly as a real one.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.cfg.batch.grad_accum
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        for micro in range(accum):
            x, y = self.loader.next_batch()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            # DDP all-reduces gradients in backward; skip that on all but the last micro-step.
            last = micro == accum - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                with self.autocast():
                    logits = self.model(x)
                loss = self.loss_fn(logits, y) / accum
                loss.backward()
            loss_acc += loss.detach().double()
        if self.cfg.optimizer.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.optimizer.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_acc

    def collect_losses(self, keep_newest: bool) -> list[tuple[float, bool]]:
        """(train loss averaged over ranks, any rank non-finite) of the finished steps, oldest first.

        With `keep_newest`, the most recent step stays pending (its all-reduce may still be in flight).
        """
        ready = self.pending[:-1] if keep_newest else self.pending
        self.pending = self.pending[len(ready):]
        out = []
        for stats, work in ready:
            if work is not None:
                work.wait()
            total, flags = stats.tolist()
            out.append((total / self.env.world_size, flags > 0))
        return out

    def evaluate(self) -> EvalResult:
        """Val loss and bpb of the current weights: plain cross-entropy, whatever `train_loss` says."""
        from trainable.data.loader import val_batches

        cfg, env = self.cfg, self.env
        bs = cfg.eval.batch_size or cfg.batch.micro_batch_size
        batches = val_batches(self.data_dir, bs, cfg.batch.seq_len, env.rank, env.world_size, cfg.eval.max_tokens)
        return evaluate(self.eval_model, batches, self.byte_lengths, self.device, self.autocast)

    def _eval_and_report(self, train_loss: float, final: bool) -> Report:
        cfg = self.cfg
        result = self.evaluate()
        probe = self._probe(result) if self.step in self.probe_plan else None
        self.evals_done += 1
        ckpt_dir = None
        # After the probe: it has restored the main run's state, so the checkpoint is the main run's.
        if cfg.checkpoint.dir is not None and (final or self.evals_done % cfg.checkpoint.every == 0):
            ckpt_dir = str(self._save_checkpoint())
        return self._report(train_loss, result, final=final, status="finished", checkpoint_dir=ckpt_dir, probe=probe)

    def _probe(self, ev: EvalResult) -> ProbeResult:
        """The cooldown probe due at this eval: from the last step's multiplier to the schedule's floor."""
        if self.probe_plan[self.step] == 0:  # at the horizon: the run's own end is its cooldown
            return ProbeResult(self.step, 0, [], ev.val_loss, ev.val_bpb)
        current = float(self.multipliers[self.step - 1])
        floor = float(self.multipliers[-1])  # a schedule ends at its floor (search_spaces.base)
        probe = run_probe(self, self.step, self.cfg.optimizer.lr, current, floor, self.probe_plan[self.step])
        self.probes.append(probe)
        self.probe_steps_run += probe.steps
        return probe

    def _report(self, train_loss: float, ev, final: bool, status: str, checkpoint_dir: str | None = None,
                probe: ProbeResult | None = None) -> Report:
        tps, mfu = self.meter.read_and_reset()
        last = max(self.step - 1, 0)
        mult = float(self.multipliers[min(last, self.total_steps - 1)])
        metrics: dict[str, Any] = {
            "step": self.step,
            "tokens": self.step * self.tokens_per_step,
            "lr": self.cfg.optimizer.lr * mult,  # the LR of the last step taken
            "lr_multiplier": mult,
            "train_loss": train_loss,
            "val_loss": ev.val_loss if ev is not None else float("nan"),
            "val_bpb": ev.val_bpb if ev is not None else float("nan"),
            "tokens_per_s": tps,
            "elapsed_s": time.perf_counter() - self.started,
        }
        if mfu is not None:
            metrics["mfu"] = mfu
        if probe is not None:
            metrics["val_loss_cooldown"] = probe.val_loss
            metrics["val_bpb_cooldown"] = probe.val_bpb
        if self.probe_plan:
            metrics["probe_steps_run"] = self.probe_steps_run  # for compute accounting
        # Wall time differs a little per rank; rank 0's value is the one everybody reports.
        if self.env.world_size > 1:
            shared = broadcast_object({"tokens_per_s": tps, "elapsed_s": metrics["elapsed_s"], "mfu": mfu})
            metrics["tokens_per_s"], metrics["elapsed_s"] = shared["tokens_per_s"], shared["elapsed_s"]
            if shared["mfu"] is not None:
                metrics["mfu"] = shared["mfu"]
        if final:
            metrics["status"] = status
        report = Report(self.step, metrics["tokens"], metrics, checkpoint_dir, final)
        if self.env.is_main:
            mark("report", step=self.step, tokens_per_s=tps, elapsed_s=metrics["elapsed_s"], final=final)
        if self.hooks is not None:
            self.hooks.on_report(report)
        elif self.env.is_main:
            print(format_report(report, self.total_steps), flush=True)
        return report

    # -----------------------------------------------------------------------------------------------------
    def _save_checkpoint(self) -> Path:
        meta = {"initial_loss": self.initial_loss, "evals_done": self.evals_done, "config": self.cfg.to_dict()}
        return save_checkpoint(
            self.cfg.checkpoint.dir, self.step, self.env, self.raw_model, self.optimizer,
            self.loader.state_dict(), meta, keep=self.cfg.checkpoint.keep,
        )

    def _resume(self, path: Path) -> None:
        meta, loader_state = load_checkpoint(path, self.env, self.raw_model, self.optimizer)
        self.loader.load_state_dict(loader_state)
        self.step = int(meta["step"])
        self.initial_loss = meta.get("initial_loss")
        self.evals_done = int(meta.get("evals_done", 0))
        # The checkpoint at step r is written after r's probe, so every planned probe up to r is behind us.
        self.probe_steps_run = sum(k for at, k in self.probe_plan.items() if at <= self.step)


def format_report(report: Report, total_steps: int) -> str:
    """One log line per eval."""
    m = report.metrics
    parts = [
        f"step {report.step}/{total_steps}",
        f"train_loss {m['train_loss']:.4f}",
        f"val_loss {m['val_loss']:.4f}",
        f"val_bpb {m['val_bpb']:.4f}",
        f"lr {m['lr']:.3e}",
        f"tok/s {m['tokens_per_s']:.0f}",
    ]
    if "val_loss_cooldown" in m:
        parts.append(f"val_loss_cooldown {m['val_loss_cooldown']:.4f}")
    if "mfu" in m:
        parts.append(f"mfu {100 * m['mfu']:.1f}%")
    if report.final:
        parts.append(f"status {m['status']}")
    return " | ".join(parts)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """A validated TrainConfig from a YAML file plus `--set a.b=c` overrides."""
    return TrainConfig.from_dict(apply_overrides(load_yaml(path), overrides or []))


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m trainable.train` (under torchrun or as a single process)."""
    parser = argparse.ArgumentParser(prog="trainable.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="trainer YAML (e.g. configs/tiny.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optimizer.lr=1e-3 (repeatable)")
    parser.add_argument("--resume-from", default=None, help="checkpoint folder (step_*) to continue from")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"trainable.train: error: {err}", file=sys.stderr)
        return 2
    result = train(cfg, resume_from=args.resume_from)
    # The process group is gone by now; RANK (set by torchrun) says whether this is rank 0.
    if result.final_metrics and os.environ.get("RANK", "0") == "0":
        m = result.final_metrics
        print(
            f"done: status {result.status} after {result.step}/{result.total_steps} steps, {result.tokens} "
            f"tokens; val_loss {m['val_loss']:.4f}, val_bpb {m['val_bpb']:.4f}, {m['elapsed_s']:.1f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
