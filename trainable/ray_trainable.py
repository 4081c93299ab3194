"""The Ray Train per-worker function around the unchanged training loop.

`train_worker(config)` runs on every DDP rank that Ray Train starts (Ray has already created the process
group). It builds the `TrainConfig`, resumes from `ray.train.get_checkpoint()` when the run has one, and
turns every trainer `Report` into `ray.train.report(metrics, checkpoint=...)`.

Checkpoints: the trainer writes a complete folder per eval (`model.pt`, `optimizer.pt`, `meta.json` from
rank 0, `rank{r}.pt` from every rank) into a node-local scratch folder. Each rank then hands Ray only the
files it wrote itself, and Ray merges the ranks' uploads into one checkpoint folder in the sweep storage.
That works on one machine (one shared scratch folder) and across nodes (one scratch folder per node) alike,
and no two ranks ever upload the same file.

Stopping: when the run's owner sets its `StopSignal` (or dies), every rank raises `RunStopped` at its next
report, so a stopped run ends within one eval interval instead of training on until its owner's process is
reaped.

Rank 0 also writes the run's report history (`trainable.report_history`) into its upload: a restarted run
says every report up to its checkpoint again before training on, so no report is lost to a restart (one
made after it had already finished only says them again).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import ray.train

from trainable import scratch
from trainable.config import TrainConfig
from trainable.report_history import ReportHistory
from trainable.reporting import Report
from trainable.run_control import RunStopped, run_scratch_dir, stop_requested
from trainable.startup_trace import mark

_RANK0_FILES = ("model.pt", "optimizer.pt", "meta.json")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(src, dst)


class RayReportHooks:
    """Trainer hooks that forward every report to Ray Train, with this rank's share of the checkpoint."""

    def __init__(self, rank: int, scratch: Path, stop_signal: Any = None):
        self.rank = rank
        self.scratch = scratch
        self.stop_signal = stop_signal
        self.reported = 0
        self.history = ReportHistory()  # every report so far, restored ones included (written by rank 0)

    def _check_stop(self) -> None:
        """Raise `RunStopped` when the stop signal is set or its owner is gone (the run is orphaned)."""
        if stop_requested(self.stop_signal):
            # Ray Train sees a worker error and ends the whole run, its other ranks included.
            raise RunStopped(f"stop requested at step report (rank {self.rank})")

    def on_report(self, report: Report) -> None:
        self._check_stop()
        metrics = dict(report.metrics)
        metrics["final"] = bool(report.final)
        self.history.add(metrics)
        upload: Path | None = None
        if report.checkpoint_dir is not None:
            upload = self._stage(Path(report.checkpoint_dir), metrics)
        checkpoint = ray.train.Checkpoint.from_directory(str(upload)) if upload is not None else None
        # Every rank calls report the same number of times (it is a barrier across the workers).
        ray.train.report(
            metrics,
            checkpoint=checkpoint,
            checkpoint_dir_name=Path(report.checkpoint_dir).name if report.checkpoint_dir else None,
        )
        self.reported += 1
        if upload is not None:
            shutil.rmtree(upload, ignore_errors=True)

    def _stage(self, ckpt: Path, metrics: dict[str, Any]) -> Path:
        """A folder holding only the files this rank owns in `ckpt` (hard links where possible)."""
        upload = self.scratch / f".upload-rank{self.rank}-{ckpt.name}"
        shutil.rmtree(upload, ignore_errors=True)
        upload.mkdir(parents=True)
        names = [f"rank{self.rank}.pt"] + (list(_RANK0_FILES) if self.rank == 0 else [])
        for name in names:
            _link_or_copy(ckpt / name, upload / name)
        if self.rank == 0:
            self.history.write(upload)
        return upload


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker`: one rank of one seed run.

    `config`: `trainer` (a complete TrainConfig dict, schedule and seed included), `scratch_dir` (a
    node-local folder for the trainer's own checkpoint writes; the same path on every rank of a run) and
    optionally `stop_signal` (a `StopSignal` handle checked before every report).

    A stop request raises `RunStopped` at the next report on every rank, so that Ray Train ends the whole
    run (a rank that merely returned would leave the others waiting in a collective). Ray Train counts that
    as a worker failure and, with `FailureConfig.max_failures > 0`, starts the run again: the signal is still
    set (or its owner gone), so the restarted workers return at once, before any training.
    """
    if stop_requested(config.get("stop_signal")):
        print("seed run restarted after a stop request: ending it", flush=True)
        return
    if config.get("backend") == "script":
        # An external training script (sweep `script:` section): launched and watched by trainable.external.
        from trainable.external.launcher import script_worker

        script_worker(config)
        return
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    # Ray Train has started this worker process and created the process group by now.
    mark("train_fn_entered", run=ctx.get_experiment_name(), rank=rank)
    run_scratch = run_scratch_dir(config.get("scratch_dir"), ctx.get_experiment_name())
    scratch.claim(run_scratch, rank)
    if ctx.get_local_rank() == 0:
        scratch.remove_orphans(run_scratch.parent)  # what killed runs (an ASHA-stopped group's) left on this node
    try:
        _train_seed_run(config, ctx, rank, run_scratch)
    finally:
        # The checkpoints staged here are in Ray's storage once reported; a failed built-in run names nothing
        # in this folder, so it goes however the run ended (unless its process is killed: see trainable.scratch).
        scratch.release(run_scratch, rank)


def _train_seed_run(config: dict[str, Any], ctx: Any, rank: int, run_scratch: Path) -> None:
    from trainable.train import train

    trainer = dict(config["trainer"])
    trainer["checkpoint"] = {**(trainer.get("checkpoint") or {}), "dir": str(run_scratch / "checkpoints")}
    cfg = TrainConfig.from_dict(trainer)
    hooks = RayReportHooks(rank, run_scratch, config.get("stop_signal"))

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        train(cfg, hooks)
        return
    with checkpoint.as_directory() as resume_dir:
        # Every report up to the checkpoint, again: the group may not have turned them into results yet.
        hooks.history = ReportHistory.read(Path(resume_dir))
        if rank == 0 and hooks.history.last is not None:
            print(f"seed run {ctx.get_experiment_name()} resumed from its checkpoint at step "
                  f"{hooks.history.last['step']}; its {len(hooks.history.rows)} reports up to there are said again",
                  flush=True)
        hooks.history.replay(ray.train.report)
        if hooks.history.finished:
            return  # restarted after its final report: saying it again was all there was to do
        result = train(cfg, hooks, resume_from=resume_dir)
        if hooks.reported == 0 and not hooks.history.rows:
            # Restarted from a checkpoint with no saved report after the run had reached its horizon: report
            # its final values so the group trial hears this seed.
            metrics = dict(result.final_metrics)
            metrics.setdefault("status", result.status)
            metrics["final"] = True
            ray.train.report(metrics)
