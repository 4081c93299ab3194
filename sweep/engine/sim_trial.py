"""Seed groups on the simulator backend: all seeds in the group trial's own process, no Ray Train.

A simulated seed run costs milliseconds, so starting Train controllers and workers for it (seconds each,
a process per worker) would be all overhead; a sweep of thousands of simulated groups on 2 cores needs the
group trial to be one light process. `SimulatedGroup` steps its seeds' `trainable.simulator.iter_reports`
in lockstep, feeds the same `GroupAggregator` as a GPT group (so results, `rung_loss` and `per_seed` are
the same contract), and `sim_group_trial` reports each group result to Tune, with a checkpoint at most every
`CHECKPOINT_INTERVAL_S` seconds.

Resume: the checkpoint of a result holds each seed's simulator checkpoint folder (`seed<k>/step_*`) and the
aggregator's state (`group.json`: the reports so far, which the predicted rung metric fits and which carry
a finished seed's final report). After `Tuner.restore` the trial continues from it bit-for-bit: the
simulator resumes each seed from its own folder and the aggregator is where it was.

Stopping: the seeds run inside the trial, so when ASHA stops the group and Tune ends the trial, they stop
with it; no stop signal is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from search_spaces import schedule_from_dict
from sweep.core.status import RUNNING
from sweep.core.trial_spec import TrialSpec
from sweep.engine.aggregation import GroupAggregator, train_run_name
from sweep.engine.rung_metrics import COOLDOWN, RungScorer
from trainable.simulator import SimulatorConfig, iter_reports

STATE_FILE = "group.json"
# A Tune checkpoint makes the driver persist it and snapshot the experiment state (seconds on a busy
# machine), while re-simulating a lost stretch costs milliseconds: checkpoint a group at most this often.
CHECKPOINT_INTERVAL_S = 2.0


def _scratch_root() -> str | None:
    """A RAM-backed folder for the seeds' per-eval checkpoint folders when there is one (made and removed
    at every eval: on a loaded disk each mkdir/rmdir cost ~5 ms, more than the simulation itself)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _seed_dir(seed: int) -> str:
    return f"seed{seed}"


def _latest_step_dir(folder: Path) -> Path | None:
    steps = sorted(folder.glob("step_*")) if folder.is_dir() else []
    return steps[-1] if steps else None


class SimulatedGroup:
    """One group's seeds on the simulator, reported as group results.

    `spec`: the group's trial spec (`schedule`, `seeds`, `simulator`, `rung_metric`, `probe_steps`,
    `cooldown_frac`, `divergence_penalty`). `workdir`: where the seeds write their simulator checkpoints
    (None: no checkpoints, e.g. in the in-process benchmark). `resume_dir`: a folder `checkpoint` wrote.
    """

    def __init__(self, spec: TrialSpec, trial_id: str, workdir: Path | None = None,
                 resume_dir: Path | None = None):
        self.seeds = list(spec.seeds)
        self.schedule = schedule_from_dict(dict(spec.schedule))
        self.workdir = workdir
        base = dict(spec.simulator or {})
        self.cfgs = {
            s: SimulatorConfig.from_dict({**base, "checkpoint_dir": None if workdir is None else str(workdir / _seed_dir(s))})
            for s in self.seeds
        }
        self.probe_steps = list(spec.probe_steps) if spec.rung_metric == COOLDOWN else []
        self.probe_frac = spec.cooldown_frac
        self.agg = GroupAggregator(self.seeds, {s: train_run_name(trial_id, s) for s in self.seeds},
                                   spec.divergence_penalty, RungScorer.from_spec(spec))
        self.resume_from: dict[int, Path | None] = {s: None for s in self.seeds}
        if resume_dir is not None:
            self.agg.load_state_dict(json.loads((resume_dir / STATE_FILE).read_text()))
            for s in self.seeds:
                self.resume_from[s] = _latest_step_dir(resume_dir / _seed_dir(s))

    def results(self) -> Iterator[dict[str, Any]]:
        """The group results still to come, in step order; the last one is final (finished or diverged)."""
        runs = {s: iter_reports(self.cfgs[s], self.schedule, s, self.resume_from[s], self.probe_steps,
                                self.probe_frac) for s in self.seeds}
        while runs:
            for s in list(runs):
                report = next(runs[s], None)
                if report is None:
                    del runs[s]
                    continue
                self._drop_older_checkpoints(s, report.checkpoint_dir)
                yield from self.agg.add(s, {**report.metrics, "final": report.final})
                if self.agg.diverged:
                    yield self.agg.diverged_result()
                    return
        yield self.agg.finish()

    def _drop_older_checkpoints(self, seed: int, keep: str | None) -> None:
        """Only a seed's latest simulator checkpoint is ever needed (it goes into the group's checkpoint)."""
        if self.workdir is None or keep is None:
            return
        for old in (self.workdir / _seed_dir(seed)).glob("step_*"):
            if str(old) != keep:
                shutil.rmtree(old, ignore_errors=True)

    def checkpoint(self, dest: Path) -> None:
        """Write what `resume_dir` needs into `dest`: each seed's latest simulator checkpoint and `group.json`."""
        assert self.workdir is not None, "checkpoints need a workdir"
        for s in self.seeds:
            latest = _latest_step_dir(self.workdir / _seed_dir(s))
            if latest is not None:
                shutil.copytree(latest, dest / _seed_dir(s) / latest.name)
        (dest / STATE_FILE).write_text(json.dumps(self.agg.state_dict()))


def sim_group_trial(config: dict[str, Any]) -> None:
    """Tune function trainable of a simulated group: every group result goes to Tune, with a checkpoint at
    most every `CHECKPOINT_INTERVAL_S`, so `Tuner.restore` continues the group from its last checkpoint
    (the results after it are computed again, identically; steps already reported are not logged twice)."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    with tempfile.TemporaryDirectory(prefix=f"schedsweep-sim-{trial_id}-", dir=_scratch_root()) as work:
        work_path = Path(work)
        resume_dir = None
        if checkpoint is not None:
            resume_dir = Path(checkpoint.to_directory(str(work_path / "resume")))
        group = SimulatedGroup(TrialSpec.from_config(config), trial_id, work_path / "seeds", resume_dir)
        last_checkpoint = time.monotonic()
        for result in group.results():
            final = result["status"] != RUNNING  # a group that has ended is never resumed
            if final or time.monotonic() - last_checkpoint < CHECKPOINT_INTERVAL_S:
                tune.report(result)
                continue
            out = Path(tempfile.mkdtemp(dir=work, prefix="ckpt-"))
            group.checkpoint(out)
            # Tune copies the folder into the trial's storage before report() returns.
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(out)))
            shutil.rmtree(out, ignore_errors=True)
            last_checkpoint = time.monotonic()
