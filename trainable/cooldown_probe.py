"""The cooldown probe: judge a run at step t as if its schedule ended there (Hägele et al. 2024).

At a rung, a run that still holds its peak LR looks worse than one that has already annealed, although it
may end better (short-horizon bias). The probe removes that bias: fork the run, anneal the LR from where it
is now to the schedule's floor over `k` more steps in the 1-sqrt shape, evaluate on the regular val
batches, then put every bit of state back, so the main run continues exactly as if nothing happened.

The fork keeps the model, optimizer, data-loader and RNG state as CPU copies: on a GPU the probe then
needs no second copy of the weights and Adam moments in device memory (for GPT-2 124M the CPU copy is
about 1.4 GiB of host memory: weights and two Adam moments, for the duration of one probe).

Conventions (tests pin them):
- a probe is due at the first eval step e at or after each `eval.probe_steps` entry s; several entries
  landing on the same eval share one probe; entries past the horizon never fire;
- its length is k = max(1, round(probe_frac * e)) optimizer steps, a fraction of the steps done so far;
  at the horizon T no probe runs (k = 0): the run has just ended along its own schedule, so its regular
  val loss is reported as the cooldown value;
- probe step i (0..k-1) uses the multiplier floor + (m - floor) * (1 - sqrt((i + 1) / k)), where m is the
  multiplier of the last step the run took and floor the schedule's final multiplier (its value at step
  T-1, see search_spaces.base): the first probe step already anneals and the last one is at the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from trainable.checkpoint import _rng_state, _set_rng_state
from trainable.evaluation import EvalResult

__all__ = ["ProbeResult", "Forkable", "probe_length", "plan_probes", "probe_multipliers", "ForkState", "run_probe"]


def probe_length(step: int, frac: float) -> int:
    """Probe steps at main-run step `step`: a `frac` fraction of the steps so far, at least one."""
    return max(1, int(round(frac * step)))


def plan_probes(probe_steps: tuple[int, ...], interval: int, total_steps: int, frac: float) -> dict[int, int]:
    """{eval step: probe length} for the evals that run a probe.

    Evals happen every `interval` steps and at `total_steps`; a probe step maps to the first eval at or
    after it; an eval at `total_steps` gets length 0 (nothing to run). The plan depends on the config only,
    so a resumed run knows which probes are behind it.
    """
    plan: dict[int, int] = {}
    for s in probe_steps:
        if s > total_steps:
            continue
        at = min(math.ceil(s / interval) * interval, total_steps)
        # At the horizon the run has annealed along its own schedule already: it *is* its cooldown.
        plan[at] = 0 if at == total_steps else probe_length(at, frac)
    return dict(sorted(plan.items()))


def probe_multipliers(current: float, floor: float, k: int) -> np.ndarray:
    """The k LR multipliers of a probe: 1-sqrt from `current` down to `floor`, ending exactly at `floor`."""
    if k < 1:
        raise ValueError(f"a probe needs at least one step, got k={k}")
    u = np.arange(1, k + 1, dtype=np.float64) / k
    out = floor + (current - floor) * (1.0 - np.sqrt(u))
    out[-1] = floor  # 1 - sqrt(1) is 0 already; pin it against any rounding in the line above
    return out


@dataclass(frozen=True)
class ProbeResult:
    """One probe: where it forked, its length, the LRs the optimizer actually used, and its val metrics."""

    step: int
    steps: int
    lrs: list[float]
    val_loss: float
    val_bpb: float


class Forkable(Protocol):
    """What the probe needs from a trainer (trainable.train.Trainer has it)."""

    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any  # TrainBatches: state_dict() / load_state_dict()
    device: torch.device
    applied_lrs: list[float]

    def optimizer_step(self, lr: float) -> torch.Tensor:
        """One optimizer step at `lr` exactly as training does it (accumulation, no_sync, clipping)."""
        ...

    def evaluate(self) -> EvalResult: ...


def _to_cpu(value: Any, memo: dict[tuple, torch.Tensor] | None = None) -> Any:
    """A deep copy of nested dicts/lists/tuples with every tensor copied to host memory.

    A tensor that appears twice (GPT's tied embedding / LM-head weight is in the state dict under both
    names) is copied once. `state_dict()` hands out a fresh detached view per name, so views are matched by
    what they look at (address, dtype, shape, strides, device), not by object identity.
    """
    memo = {} if memo is None else memo
    if isinstance(value, torch.Tensor):
        key = (value.data_ptr(), value.dtype, tuple(value.shape), value.stride(), str(value.device))
        if key not in memo or value.numel() == 0:
            memo[key] = value.detach().to("cpu", copy=True)
        return memo[key]
    if isinstance(value, dict):
        return {k: _to_cpu(v, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v, memo) for v in value)
    return value


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


@dataclass
class ForkState:
    """Everything a probe changes, copied to host memory so that `restore` puts it back bit for bit.

    Restoring copies *into* the live tensors (parameters, buffers, Adam moments) rather than loading new
    ones: no second copy of the optimizer state is ever allocated on the device, and every reference to
    those tensors (the optimizer's, DDP's, a compiled module's) stays valid.
    """

    model: dict[str, torch.Tensor]
    optimizer: list[dict[str, Any] | None]  # per parameter, in param_groups order; None: no state yet
    groups: list[dict[str, Any]]  # param_groups' hyperparameters (lr, betas, ...)
    loader: dict[str, Any]
    rng: dict[str, Any]

    @classmethod
    def capture(cls, trainer: Forkable) -> "ForkState":
        opt = trainer.optimizer
        return cls(
            model=_to_cpu(trainer.raw_model.state_dict()),
            optimizer=[_to_cpu(dict(opt.state[p])) if p in opt.state else None for p in _params(opt)],
            groups=[{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
            loader=dict(trainer.loader.state_dict()),
            rng=_rng_state(trainer.device),
        )

    def restore(self, trainer: Forkable) -> None:
        trainer.raw_model.load_state_dict(self.model)  # copies into the existing parameters and buffers
        opt = trainer.optimizer
        with torch.no_grad():
            for p, saved in zip(_params(opt), self.optimizer):
                if saved is None:
                    opt.state.pop(p, None)
                    continue
                live = opt.state[p]
                for key in [k for k in live if k not in saved]:
                    del live[key]
                for key, value in saved.items():
                    if isinstance(value, torch.Tensor) and isinstance(live.get(key), torch.Tensor):
                        live[key].copy_(value)
                    else:
                        live[key] = value.to(p.device) if isinstance(value, torch.Tensor) else value
        for group, saved in zip(opt.param_groups, self.groups):
            group.update(saved)
        opt.zero_grad(set_to_none=True)
        trainer.loader.load_state_dict(self.loader)
        _set_rng_state(self.rng, trainer.device)

    def nbytes(self) -> int:
        """Host memory held by the tensors of this fork (the model and optimizer copies)."""
        tensors = list(self.model.values()) + [v for d in self.optimizer if d for v in d.values()]
        unique = {id(t): t for t in tensors if isinstance(t, torch.Tensor)}
        return sum(t.numel() * t.element_size() for t in unique.values())


def run_probe(trainer: Forkable, step: int, peak_lr: float, current: float, floor: float, k: int) -> ProbeResult:
    """Fork `trainer` at main-run `step`, anneal from multiplier `current` to `floor` in `k` steps, evaluate,
    and restore it. Every DDP rank must call this at the same step with the same arguments (the probe
    steps all-reduce gradients like real steps)."""
    lrs = peak_lr * probe_multipliers(current, floor, k)
    fork = ForkState.capture(trainer)
    seen = len(trainer.applied_lrs)
    try:
        for lr in lrs:
            trainer.optimizer_step(float(lr))
        ev = trainer.evaluate()
    finally:
        # The LR record belongs to the main run: keep the probe's part out of it, but return it.
        used = trainer.applied_lrs[seen:]
        del trainer.applied_lrs[seen:]
        fork.restore(trainer)
    return ProbeResult(step=step, steps=k, lrs=[float(x) for x in used], val_loss=ev.val_loss, val_bpb=ev.val_bpb)
