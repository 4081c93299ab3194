"""A stand-in for the GPT trainer whose loss curve comes from the Multi-Power Law: sweeps in milliseconds.

`simulate(cfg, schedule, seed, hooks, resume_from)` emits the same `Report`s as `trainable.train.train`
(the metric names of docs/contracts.md, at every eval step, `status` in the final one) and returns a
`TrainResult`, so a group trial can swap it in and the whole service (seed groups, ASHA, Optuna, MLflow,
resume, report) runs unchanged on thousands of trials.

The loss at a report step s of seed k is

    val_loss = MPL(s) + offset(k) + noise(k, run, s)

- ``MPL(s)``: `trainable.loss_law.MultiPowerLaw` on the absolute LRs ``peak_lr * multipliers(T)``, in the
  paper's form by default (warmup = the steps before the schedule's peak; it ranks schedules with different
  warmups as real runs do, 0.11-0.16 nats below the presets' fitted level: see `trainable.loss_law`),
  capped at `initial_loss` (the law is unbounded near LR sum 0);
- ``offset(k) ~ N(0, seed_offset_std)``: what a seed (init, data order) does to *every* shape alike; it
  cancels in a paired comparison, as the real shared seed effect does;
- ``noise ~ N(0, noise_std)``, independent per seed, per run (the exact LR sequence) and per step:
  the part of seed noise that does not cancel. `train_loss` gets its own independent draw.

Every random draw is keyed by (noise_seed, seed, run, step) rather than drawn from a running stream, so a
run gives the same curve whenever it is asked, and a resumed run continues bit-for-bit.

Divergence (optional): when the LR first exceeds `diverge_lr`, the run ends at that step with status
``diverged`` and NaN losses, as the trainer reports a blow-up.

Cooldown probe (optional, `probe_steps`/`probe_frac`, the GPT trainer's conventions of
`trainable.cooldown_probe`): at the first eval at or after each probe step e, the report also carries
``val_loss_cooldown`` = the law's loss after the run's LRs so far followed by k = max(1, round(probe_frac x e))
1-sqrt steps from the current multiplier to the schedule's final one, plus this seed's offset and an
independent noise draw: the exact analogue of forking the run, annealing it and evaluating the fork.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from search_spaces.base import Schedule
from search_spaces.errors import ConfigError
from search_spaces.validation import check_keys
from trainable.loss_law import MultiPowerLaw, get_law, infer_warmup_steps, preset_setting
from trainable.reporting import Hooks, Report, TrainResult

__all__ = [
    "SimulatorConfig", "simulate", "iter_reports", "noiseless_final_loss", "simulated_losses", "cooldown_probe_loss",
    "probe_plan",
]

# Same folder naming as trainable.checkpoint (not imported: that module pulls in torch, which a simulated
# sweep of thousands of trials should not pay for).
_CKPT_PREFIX = "step_"
_META = "meta.json"
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated world looks like. Validated on construction (`ConfigError` names the field).

    `law`: a preset name of `trainable.loss_law` or a mapping of the seven parameters (and optionally
    ``form``: ``paper``, the default, or ``code``; see `trainable.loss_law.LawForm`). The paper presets
    were fitted at peak LR ~3e-4 over ~24k steps, `proving_ground` at 4e-3 over 1,200 steps of the byte-level
    proving-ground GPT (set `initial_loss: 5.55`, ln 257, and `bytes_per_token: 1.0` with it); far from
    those the curves are extrapolations. `peak_lr`, `noise_std` and `seed_offset_std` left out take the
    preset's own (`trainable.loss_law.preset_setting`). `bytes_per_token` turns nats/token into bits/byte for `val_bpb` (~4.3 UTF-8 bytes per
    GPT-2 token on English web text, an assumption of this simulator).
    """

    law: str | dict[str, float] = "mpl_25m"
    peak_lr: float | None = None  # None: the law preset's own (`trainable.loss_law.preset_setting`)
    total_steps: int = 24_000
    eval_interval: int = 1_000
    tokens_per_step: int = 65_536
    noise_std: float | None = None  # None: the law preset's measured noise (`trainable.loss_law.preset_setting`)
    seed_offset_std: float | None = None  # None: likewise
    noise_seed: int = 0
    diverge_lr: float | None = None
    step_delay_s: float = 0.0
    bytes_per_token: float = 4.3
    initial_loss: float = math.log(50257)  # uniform over the GPT-2 vocabulary: where training starts
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        # PyYAML reads `3e-4` (no dot) as a string; accept what is clearly a number, as TrainConfig does.
        for name in ("peak_lr", "noise_std", "seed_offset_std", "diverge_lr", "step_delay_s", "bytes_per_token",
                     "initial_loss"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, float(value))
                except ValueError:
                    pass  # reported as "expected a finite number" below
        self.law_params()  # a bad law name or parameter fails here, named under `law`
        setting = preset_setting(self.law)
        for name in ("peak_lr", "noise_std", "seed_offset_std"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(setting, name))
        _number(self.peak_lr, "peak_lr", positive=True)
        _integer(self.total_steps, "total_steps", 1)
        _integer(self.eval_interval, "eval_interval", 1)
        _integer(self.tokens_per_step, "tokens_per_step", 1)
        _number(self.noise_std, "noise_std")
        _number(self.seed_offset_std, "seed_offset_std")
        _integer(self.noise_seed, "noise_seed", 0)
        if self.diverge_lr is not None:
            _number(self.diverge_lr, "diverge_lr", positive=True)
        _number(self.step_delay_s, "step_delay_s")
        _number(self.bytes_per_token, "bytes_per_token", positive=True)
        _number(self.initial_loss, "initial_loss", positive=True)
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            raise ConfigError("checkpoint_dir", f"expected a path string, got {self.checkpoint_dir!r}")

    def law_params(self) -> MultiPowerLaw:
        """The law itself, from the preset name or the parameter mapping."""
        if isinstance(self.law, str):
            return get_law(self.law)
        try:
            return MultiPowerLaw.from_dict(self.law)
        except ConfigError as err:
            raise err.prefixed("law") from None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimulatorConfig":
        """From a YAML/JSON mapping; unknown keys raise `ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError("simulator", f"expected a mapping, got {type(d).__name__}")
        check_keys(d, {f.name for f in fields(cls)}, "")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any, field: str, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(field, f"expected a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(field, f"must be {'> 0' if positive else '>= 0'}, got {value}")


def _integer(value: Any, field: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value}")


# ---------------------------------------------------------------------------------------------------------


def _absolute_lrs(schedule: Schedule, cfg: SimulatorConfig) -> tuple[np.ndarray, np.ndarray]:
    mults = np.asarray(schedule.multipliers(cfg.total_steps), dtype=np.float64)
    return mults, cfg.peak_lr * mults


def _run_key(lrs: np.ndarray) -> int:
    """A 64-bit id of the exact LR sequence: the same schedule at the same peak LR is the same run."""
    return int.from_bytes(hashlib.sha256(lrs.tobytes()).digest()[:8], "little")


def _normal(cfg: SimulatorConfig, *key: int) -> float:
    """One standard normal draw determined by (noise_seed, *key) alone."""
    return float(np.random.default_rng([cfg.noise_seed, *key]).standard_normal())


# Streams of draws, so val noise, train noise and the seed offset never share a draw.
_OFFSET, _VAL, _TRAIN, _PROBE = 0, 1, 2, 3


def _divergence_step(lrs: np.ndarray, cfg: SimulatorConfig) -> int | None:
    """Steps done when the run blows up (the first step taken above `diverge_lr`), or None."""
    if cfg.diverge_lr is None:
        return None
    above = np.flatnonzero(lrs > cfg.diverge_lr)
    return int(above[0]) + 1 if len(above) else None


def eval_steps(cfg: SimulatorConfig) -> list[int]:
    """Report steps: every `eval_interval` steps and the last step (like the trainer)."""
    steps = list(range(cfg.eval_interval, cfg.total_steps + 1, cfg.eval_interval))
    if not steps or steps[-1] != cfg.total_steps:
        steps.append(cfg.total_steps)
    return steps


# Noiseless law values on a run's whole eval grid, shared by the seeds of a group (they all run the same
# schedule). Bounded: a sweep of thousands of shapes must not keep every curve alive.
_CURVES: dict[tuple, dict[int, float]] = {}
_CURVES_MAX = 512


def _clean_losses(cfg: SimulatorConfig, lrs: np.ndarray, run: int) -> dict[int, float]:
    """The law at every eval step of the run (always the whole grid, so that a resumed run, which asks
    for fewer steps, gets bit-identical values: the blocked sums of `loss_curve` depend on the block)."""
    key = (cfg.law_params(), cfg.peak_lr, cfg.total_steps, cfg.eval_interval, cfg.initial_loss, run)
    if key not in _CURVES:
        grid = eval_steps(cfg)
        law = cfg.law_params()
        values = np.minimum(law.loss_curve(lrs, infer_warmup_steps(lrs), steps=np.asarray(grid)), cfg.initial_loss)
        if len(_CURVES) >= _CURVES_MAX:
            _CURVES.pop(next(iter(_CURVES)))  # oldest first (dicts keep insertion order)
        _CURVES[key] = dict(zip(grid, values.tolist()))
    return _CURVES[key]


def simulated_losses(
    cfg: SimulatorConfig, schedule: Schedule, seed: int, steps: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """(val_loss, train_loss) of `seed` at report `steps` (eval steps of `cfg`), noise included."""
    _, lrs = _absolute_lrs(schedule, cfg)
    run = _run_key(lrs)
    curve = _clean_losses(cfg, lrs, run)
    unknown = [s for s in steps if s not in curve]
    if unknown:
        raise ValueError(f"steps {unknown} are not eval steps of this configuration")
    clean = [curve[s] for s in steps]
    offset = cfg.seed_offset_std * _normal(cfg, _OFFSET, seed)
    val = np.array([c + offset + cfg.noise_std * _normal(cfg, _VAL, seed, run, s) for c, s in zip(clean, steps)])
    train = np.array([c + offset + cfg.noise_std * _normal(cfg, _TRAIN, seed, run, s) for c, s in zip(clean, steps)])
    return val, train


def probe_plan(cfg: SimulatorConfig, probe_steps: Any, probe_frac: float) -> dict[int, int]:
    """{eval step: probe length k} as the GPT trainer plans it: a probe step maps to the first eval at or
    after it (steps past the horizon never fire), k = max(1, round(probe_frac x eval step))."""
    if not (isinstance(probe_frac, (int, float)) and not isinstance(probe_frac, bool) and 0 < probe_frac <= 1):
        raise ConfigError("probe_frac", f"must be in (0, 1], got {probe_frac!r}")
    grid = eval_steps(cfg)
    plan: dict[int, int] = {}
    for s in probe_steps or ():
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ConfigError("probe_steps", f"expected step counts >= 1, got {s!r}")
        if s > cfg.total_steps:
            continue
        at = next(e for e in grid if e >= s)
        plan[at] = max(1, int(round(probe_frac * at)))
    return dict(sorted(plan.items()))


def _probe_lrs(lrs: np.ndarray, step: int, k: int) -> np.ndarray:
    """The LRs of a probe forked after `step` steps: the run's first `step` LRs, then k steps of 1-sqrt
    from the last LR taken down to the schedule's final LR (its floor), the last one exactly at it."""
    current, floor = lrs[step - 1], lrs[-1]
    tail = floor + (current - floor) * (1.0 - np.sqrt(np.arange(1, k + 1, dtype=np.float64) / k))
    tail[-1] = floor
    return np.concatenate([lrs[:step], tail])


def cooldown_probe_loss(cfg: SimulatorConfig, schedule: Schedule, seed: int, step: int, k: int) -> float:
    """`seed`'s val loss after a k-step 1-sqrt cooldown probe forked at `step` (noise included).

    The noiseless part is the law at the end of the probe's LR sequence (its warmup is the run's: the probe
    never goes above the peak); the seed's offset applies as to every run of the seed; the noise is a draw of
    its own (stream `_PROBE`, keyed by run and step), independent of the main run's val noise.
    """
    _, lrs = _absolute_lrs(schedule, cfg)
    probe = _probe_lrs(lrs, step, k)
    clean = min(cfg.law_params().final_loss(probe, infer_warmup_steps(probe)), cfg.initial_loss)
    offset = cfg.seed_offset_std * _normal(cfg, _OFFSET, seed)
    return clean + offset + cfg.noise_std * _normal(cfg, _PROBE, seed, _run_key(lrs), step)


def noiseless_final_loss(schedule: Schedule, cfg: SimulatorConfig) -> float:
    """The law's final loss for `schedule` under `cfg`, without noise: the ground truth a sweep should find.

    A schedule that would diverge gets +inf (never the best shape). Cheap (O(T x LR changes) once), so
    dense evaluation of many shapes is practical.
    """
    _, lrs = _absolute_lrs(schedule, cfg)
    if _divergence_step(lrs, cfg) is not None:
        return math.inf
    return min(cfg.law_params().final_loss(lrs, infer_warmup_steps(lrs)), cfg.initial_loss)


def _write_checkpoint(cfg: SimulatorConfig, step: int, seed: int) -> str | None:
    """`<checkpoint_dir>/step_XXXXXXXX/meta.json` written atomically (temp folder, then rename)."""
    if cfg.checkpoint_dir is None:
        return None
    root = Path(cfg.checkpoint_dir)
    final = root / f"{_CKPT_PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / _META).write_text(json.dumps({"step": step, "seed": seed, "simulator": True}))
    if final.exists():  # a restarted run writing the same step again: the content is the same
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return str(final)


def _resume_step(resume_from: str | Path, cfg: SimulatorConfig) -> int:
    meta_path = Path(resume_from) / _META
    try:
        step = json.loads(meta_path.read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError("resume_from", f"not a simulator checkpoint folder ({meta_path}): {err}") from None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= cfg.total_steps:
        raise ConfigError("resume_from", f"checkpoint step {step!r} is outside 0..{cfg.total_steps}")
    return step


def iter_reports(
    cfg: SimulatorConfig, schedule: Schedule, seed: int, resume_from: str | Path | None = None,
    probe_steps: Any = (), probe_frac: float = 0.2,
) -> Iterator[Report]:
    """The reports of one simulated seed run, one per eval step, produced lazily (a caller that stops
    iterating has stopped the run: later steps are never computed, checkpointed or slept for).

    Arguments as for `simulate`. A checkpoint folder is written (when `cfg.checkpoint_dir` is set) before
    its report is yielded, so a caller that keeps the report's `checkpoint_dir` can resume from it.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", f"expected an integer >= 0, got {seed!r}")
    seed = int(seed)
    mults, lrs = _absolute_lrs(schedule, cfg)
    plan = probe_plan(cfg, probe_steps, probe_frac)
    start = 0 if resume_from is None else _resume_step(resume_from, cfg)
    blow_up = _divergence_step(lrs, cfg)
    points = [s for s in eval_steps(cfg) if s > start]
    if blow_up is not None:
        points = [s for s in points if s < blow_up] + ([blow_up] if blow_up > start else [])
    ordinary = [s for s in points if s != blow_up]  # the blow-up step reports NaN losses, no draw needed
    val, train = simulated_losses(cfg, schedule, seed, ordinary) if ordinary else (np.array([]), np.array([]))

    started = time.perf_counter()
    last_step, last_time = start, started
    for i, step in enumerate(points):
        if cfg.step_delay_s > 0:
            time.sleep(cfg.step_delay_s * (step - last_step))
        diverged = step == blow_up
        final = diverged or step == cfg.total_steps
        now = time.perf_counter()
        tokens = step * cfg.tokens_per_step
        val_loss = math.nan if diverged else float(val[i])
        metrics: dict[str, Any] = {
            "step": step,
            "tokens": tokens,
            "lr": float(lrs[step - 1]),  # the LR of the last step taken, as the trainer reports it
            "lr_multiplier": float(mults[step - 1]),
            "train_loss": math.nan if diverged else float(train[i]),
            "val_loss": val_loss,
            "val_bpb": val_loss / (_LN2 * cfg.bytes_per_token),
            "tokens_per_s": (step - last_step) * cfg.tokens_per_step / max(now - last_time, 1e-9),
            "elapsed_s": now - started,
        }
        if step in plan and not diverged:
            probe = cooldown_probe_loss(cfg, schedule, seed, step, plan[step])
            metrics["val_loss_cooldown"] = probe
            metrics["val_bpb_cooldown"] = probe / (_LN2 * cfg.bytes_per_token)
        if plan:
            # Extra steps the probes so far cost (the trainer's compute-accounting key).
            metrics["probe_steps_run"] = sum(k for at, k in plan.items() if at <= step)
        if final:
            metrics["status"] = "diverged" if diverged else "finished"
        ckpt = None if diverged else _write_checkpoint(cfg, step, seed)
        last_step, last_time = step, now
        yield Report(step, tokens, metrics, ckpt, final)
        if diverged:
            return


def simulate(
    cfg: SimulatorConfig, schedule: Schedule, seed: int, hooks: Hooks | None = None,
    resume_from: str | Path | None = None, probe_steps: Any = (), probe_frac: float = 0.2,
) -> TrainResult:
    """Run one simulated seed: report at every eval step (and the end), like `trainable.train.train`.

    `resume_from`: a checkpoint folder this function wrote (`step_*` with `meta.json`); the run continues
    after that step with exactly the values the uninterrupted run reports. `probe_steps`/`probe_frac`: the
    cooldown probes (module docstring), as `eval.probe_steps`/`eval.probe_frac` of the GPT trainer.
    `TrainResult.lrs` holds the LRs of the steps run here; `train_losses` stays empty (the simulator models
    report points only).
    """
    _, lrs = _absolute_lrs(schedule, cfg)
    start = 0 if resume_from is None else _resume_step(resume_from, cfg)
    result = TrainResult(status="finished", step=start, tokens=start * cfg.tokens_per_step,
                         total_steps=cfg.total_steps, start_step=start, final_metrics={})
    for report in iter_reports(cfg, schedule, seed, resume_from, probe_steps, probe_frac):
        if hooks is not None:
            hooks.on_report(report)
        result.reports.append(report)
        if report.metrics.get("status") == "diverged":
            result.status = "diverged"
    last_step = result.reports[-1].step if result.reports else start
    result.step = last_step
    result.tokens = last_step * cfg.tokens_per_step
    result.lrs = [float(x) for x in lrs[start:last_step]]
    if result.reports:
        result.final_metrics = dict(result.reports[-1].metrics)
        result.checkpoint_dir = next((r.checkpoint_dir for r in reversed(result.reports) if r.checkpoint_dir), None)
    return result
