"""Run an external training script on every Ray Train worker, as torchrun would, and relay its reports.

`script_worker(config)` is the Ray Train `train_loop_per_worker` of a `script` seed run. On each rank it:

1. agrees on a rendezvous for the script (rank 0 picks a free port on its node and tells the others
   through the process group Ray Train already set up: a port of the script's own, not Ray's);
2. starts `python SCRIPT ARGS` with `script.env` and the hook's variables (`trainable.external.channel`),
   among them this rank's device and the process-group backend that works on it (SCHEDSWEEP_DEVICE,
   SCHEDSWEEP_DIST_BACKEND: "cuda:<local rank>" and nccl on a GPU worker, "cpu" and gloo on a CPU one). With
   two or more workers also RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and
   MASTER_PORT, as torchrun sets them; with one worker none of these, as for `python SCRIPT` (scripts such as
   nanoGPT take their DDP branch whenever RANK is set, and that branch assumes CUDA). `{seed}`,
   `{horizon_steps}` and `{run_dir}` (a node-local folder of this seed run, e.g. for `--out-dir {run_dir}/out`)
   in args and env are replaced by their values;
3. polls every `_POLL_S`: rank 0 drains the script's reports (the hook's JSON-lines file, or stdout lines
   matched by `metrics_regex`) and reads the group's StopSignal; then every rank shares its state with
   `all_gather_object`, so all ranks see the same reports and decide the same thing. Each rank then calls
   `ray.train.report` once per report (it is collective), rank 0 with the checkpoint the script reported.

Endings: a report at step >= horizon_steps is the last one (status finished; non-finite losses end the run
as diverged); a stop request terminates the scripts and raises `RunStopped`; a non-zero exit, a clean exit
before the horizon or without any report, and `timeout_s` without output or report on any rank each
terminate the scripts and raise `ScriptError` naming the script, the rank and the last output lines.

Resume: every rank first says again the reports saved in the run's latest checkpoint (the run's report
history, `trainable.report_history`, which rank 0 adds to every checkpoint), then the checkpoint (what the
script reported) is handed to the script as `SCHEDSWEEP_RESUME_DIR`; reports the resumed script makes again at
or before the checkpoint's step are dropped; a run restored after its final report only says its reports
again.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import ray.train

from trainable import scratch
from trainable.external import channel
from trainable.external.metrics_parser import MetricsLineParser
from trainable.external.process import ScriptProcess
from trainable.report_history import ReportHistory
from trainable.run_control import RunStopped, run_scratch_dir, stop_requested

_POLL_S = 0.5
_DONE_GRACE_S = 30.0  # after the final report, how long a script may take to exit on its own
_TAIL_IN_ERROR = 20


class ScriptError(RuntimeError):
    """The external script failed: crashed, hung past `timeout_s`, or ended without reaching the horizon."""


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _fill(text: str, values: dict[str, Any]) -> str:
    # Plain replacement, not str.format: args may hold JSON or other braces of their own.
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _lines(lines: list[str]) -> str:
    lines = lines[-_TAIL_IN_ERROR:]
    return "\n".join("    " + line for line in lines) if lines else "    (no output)"


def judge(states: list[dict[str, Any]], *, script: str, horizon: int, timeout_s: float | None,
          reported: int, last_step: int | None) -> tuple[str, str]:
    """What to do after one poll, from every rank's state (the same answer on every rank).

    Returns ("continue" | "fail", message). `reported`: reports relayed so far; `last_step`: the step of
    the latest one. Called only while the final report has not been relayed (and no stop was requested).
    """
    name = Path(script).name
    for rank, st in enumerate(states):
        code = st["exit_code"]
        if code not in (None, 0):
            tail = st["stderr_tail"] or st["tail"]
            return "fail", (f"script {name} {_exit_text(code)} on rank {rank} (log {st['log']}); last stderr lines:\n"
                            f"{_lines(tail)}")
    if states[0]["exit_code"] == 0:
        if reported == 0:
            why = "without reporting any metrics: call hook.report(...) on rank 0 or set script.metrics_regex"
        else:
            why = (f"at step {last_step}, before the horizon ({horizon} steps): make the script run "
                   "script.horizon_steps steps and report the last one")
        return "fail", f"script {name} exited with code 0 {why} (log {states[0]['log']}); last output lines:\n" \
                       f"{_lines(states[0]['tail'])}"
    if timeout_s is not None:
        idle = min(st["idle_s"] for st in states)
        if idle > timeout_s:
            return "fail", (f"script {name} produced no output and no report for {idle:.0f} s (script.timeout_s = "
                            f"{timeout_s:g}) and was killed (log {states[0]['log']}); last output lines of rank 0:\n"
                            f"{_lines(states[0]['tail'])}")
    return "continue", ""


def final_status(metrics: dict[str, Any], horizon: int) -> str | None:
    """`diverged` for a non-finite loss, `finished` at or past the horizon, else None (not the last)."""
    for key in ("val_loss", "train_loss"):
        value = metrics.get(key)
        if value is not None and not math.isfinite(float(value)):
            return "diverged"
    return "finished" if int(metrics["step"]) >= horizon else None


class _Relay:
    """Rank 0's side: turns raw script records into the metrics every rank reports."""

    def __init__(self, horizon: int, resumed: dict[str, Any] | None, seed_in_args: bool):
        self.horizon = horizon
        self.seed_in_args = seed_in_args  # `{seed}` in script.args or env: the seed reaches the script anyway
        self.started = time.time()
        self.prev_tokens: tuple[int, float] | None = (int(resumed.get("tokens", 0)), self.started) if resumed else None

    def metrics(self, record: dict[str, Any]) -> dict[str, Any]:
        m = {k: v for k, v in record.items() if k not in ("checkpoint", "time")}
        now = float(record.get("time", time.time()))
        m["step"] = int(m["step"])
        if self.seed_in_args:
            m[channel.SEED_READ] = 1.0
        m.setdefault("elapsed_s", now - self.started)
        if "tokens" in m and "tokens_per_s" not in m:
            prev_tokens, prev_t = self.prev_tokens or (0, self.started)
            m["tokens_per_s"] = (int(m["tokens"]) - prev_tokens) / max(now - prev_t, 1e-9)
            self.prev_tokens = (int(m["tokens"]), now)
        status = final_status(m, self.horizon)
        m["final"] = status is not None
        if status is not None:
            m["status"] = status
        return m


def _drain(reader: channel.ReportReader | None, printed: "queue.Queue[dict[str, Any]]") -> list[dict[str, Any]]:
    out = reader.read_new() if reader is not None else []
    while True:
        try:
            out.append(printed.get_nowait())
        except queue.Empty:
            return out


def _gather(state: dict[str, Any], world: int, group: Any) -> list[dict[str, Any]]:
    if world == 1:
        return [state]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, state, group=group)
    return out


def _broadcast(value: Any, world: int, group: Any) -> Any:
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def _object_group(world: int) -> Any:
    """A gloo group for the launcher's small messages (Ray Train's own group is NCCL on GPUs)."""
    if world == 1:
        return None
    import torch.distributed as dist

    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def _device() -> str:
    """This worker's torch device: its GPU ("cuda:N" as Ray Train numbers it among the GPUs it shows this
    worker) or "cpu"."""
    if not ray.get_gpu_ids():
        return "cpu"
    from ray.train.torch import get_device

    return str(get_device())


def _seed_in_args(spec: dict[str, Any]) -> bool:
    """Whether `{seed}` is filled into the script's args or env (the seed then reaches it without the hook)."""
    texts = [*(spec.get("args") or []), *(spec.get("env") or {}).values()]
    return any("{seed}" in str(t) for t in texts)


def script_worker(config: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker` for the `script` backend (see the module docstring).

    `config`: `script` (a `ScriptSection.to_dict()`), `schedule` (the group's schedule dict), `seed`,
    `scratch_dir` (node-local folder for logs, the report file and staged checkpoints), `stop_signal`.
    """
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        _run(config, None)
        return
    with checkpoint.as_directory() as resume_dir:
        _run(config, Path(resume_dir))


def _run(config: dict[str, Any], resume_dir: Path | None) -> None:
    spec = config["script"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    horizon = int(spec["horizon_steps"])
    group = _object_group(world)

    history = ReportHistory()
    if resume_dir is not None:
        # Every report up to the checkpoint, again (on every rank: a report is collective); the group may not
        # have turned them into results yet.
        history = ReportHistory.read(resume_dir)
        if rank == 0 and history.last is not None:
            print(f"seed run {ctx.get_experiment_name()} resumed from its checkpoint at step {history.last['step']}; "
                  f"its {len(history.rows)} reports up to there are said again", flush=True)
        history.replay(ray.train.report)
    run_dir = run_scratch_dir(config.get("scratch_dir"), ctx.get_experiment_name())
    scratch.claim(run_dir, rank)
    if ctx.get_local_rank() == 0:
        scratch.remove_orphans(run_dir.parent)  # what killed runs (an ASHA-stopped group's) left on this node
    if history.finished:
        # Restored after its last report (the driver was killed before the group used it): saying it again was
        # all there was to do, and what the killed start left in the scratch folder can go.
        scratch.release(run_dir, rank)
        return

    stop_file = run_dir / f"rank{rank}.stop"
    stop_file.unlink(missing_ok=True)
    values = {"seed": int(config["seed"]), "horizon_steps": horizon, "run_dir": str(run_dir / "files")}

    # torchrun's variables: only a run of two or more workers sees them (Ray's own, if any, never leak through).
    env = {k: v for k, v in os.environ.items() if k not in channel.TORCHRUN_ENV}
    env.setdefault("PYTHONUNBUFFERED", "1")  # line by line through the pipe: reports, regex lines, timeouts
    env.update({k: _fill(v, values) for k, v in (spec.get("env") or {}).items()})
    if world > 1:
        master = None
        if rank == 0:
            host = ray.util.get_node_ip_address()
            master = (host, _free_port(host))
        host, port = _broadcast(master, world, group)
        env.update(RANK=str(rank), LOCAL_RANK=str(ctx.get_local_rank()), WORLD_SIZE=str(world),
                   LOCAL_WORLD_SIZE=str(ctx.get_local_world_size()), GROUP_RANK=str(ctx.get_node_rank()),
                   MASTER_ADDR=str(host), MASTER_PORT=str(port))
    device = _device()
    env.update({channel.ENV_SCHEDULE: json.dumps(config["schedule"]), channel.ENV_HORIZON: str(horizon),
                channel.ENV_SEED: str(values["seed"]), channel.ENV_STOP_FILE: str(stop_file),
                channel.ENV_DEVICE: device, channel.ENV_DIST_BACKEND: "nccl" if device.startswith("cuda") else "gloo"})
    if resume_dir is not None:
        env[channel.ENV_RESUME_DIR] = str(resume_dir)

    reader, printed = None, queue.Queue()
    on_stdout = None
    stage = run_dir / "stage"
    if rank == 0:
        report_file = run_dir / "reports.jsonl"
        report_file.unlink(missing_ok=True)
        channel.ack_path(report_file).unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        env.update({channel.ENV_REPORT_FILE: str(report_file), channel.ENV_STAGE_DIR: str(stage)})
        reader = channel.ReportReader(report_file)
        if spec.get("metrics_regex"):
            parser = MetricsLineParser(spec["metrics_regex"])

            def on_stdout(line: str) -> None:
                parsed = parser.parse(line)
                if parsed is not None:
                    printed.put({**parsed, "time": time.time()})
    else:
        for key in (channel.ENV_REPORT_FILE, channel.ENV_STAGE_DIR):
            env.pop(key, None)

    argv = [sys.executable, spec["path"], *(_fill(a, values) for a in spec.get("args") or [])]
    proc = ScriptProcess(argv, env, str(Path(spec["path"]).parent), run_dir / f"rank{rank}.log", on_stdout)
    try:
        _watch(proc, spec, rank, world, group, horizon, config.get("stop_signal"), reader, printed,
               _Relay(horizon, history.last, _seed_in_args(spec)) if rank == 0 else None, stop_file, history)
    except RunStopped:
        proc.terminate()
        scratch.release(run_dir, rank)
        raise
    except Exception:
        # A failed run keeps its folder: the error names its logs. Everything else the sweep keeps is in the
        # run's Ray Train checkpoints by now, so a run that ended as it should (finished, diverged or stopped)
        # removes the script's files (`{run_dir}`), staged checkpoints, reports and logs.
        scratch.mark_failed(run_dir)
        raise
    finally:
        proc.terminate()
    scratch.release(run_dir, rank)


def _watch(proc: ScriptProcess, spec: dict[str, Any], rank: int, world: int, group: Any, horizon: int,
           stop_signal: Any, reader: channel.ReportReader | None, printed: "queue.Queue[dict[str, Any]]",
           relay: _Relay | None, stop_file: Path, history: ReportHistory) -> None:
    reported, received, last_step, done_status = 0, 0, None, None
    # A resumed script may report its checkpoint's step again (nanoGPT evaluates at every eval step it starts
    # on): the sweep already has every report up to there, said again from the history.
    resumed_step = int(history.last["step"]) if history.last is not None else -1
    while True:
        code = proc.exit_code()  # before draining: once it has ended, every report is already there
        state: dict[str, Any] = {"exit_code": code, "idle_s": proc.idle_s(), "tail": proc.last_lines(),
                                 "stderr_tail": proc.last_lines(stderr_only=True), "log": str(proc.log_path)}
        if rank == 0:
            records = _drain(reader, printed)
            if records:
                proc.touch()
                state["idle_s"] = 0.0
            state["reports"] = [(relay.metrics(r), r.get("checkpoint")) for r in records]
            state["stop"] = stop_requested(stop_signal)
        states = _gather(state, world, group)
        if states[0].get("stop"):
            stop_file.touch()  # for scripts polling hook.should_stop() during the SIGTERM grace period
            raise RunStopped(f"stop requested (rank {rank})")  # before relaying more, as the trainer does
        for metrics, ckpt in states[0]["reports"]:
            if done_status is not None:
                break  # nothing after the last report reaches the sweep
            if metrics["step"] <= resumed_step:
                continue
            history.add(metrics)
            _report(metrics, ckpt if rank == 0 else None, history)
            reported, last_step = reported + 1, metrics["step"]
            if metrics["final"]:
                done_status = metrics["status"]
        received += len(states[0]["reports"])
        if rank == 0 and states[0]["reports"]:
            channel.write_ack(reader.path, received)  # releases the script's waiting hook.report
        if done_status is not None:
            if done_status == "finished":
                _wait_exit(proc, _DONE_GRACE_S)
            return
        action, message = judge(states, script=spec["path"], horizon=horizon, timeout_s=spec.get("timeout_s"),
                                reported=reported, last_step=last_step)
        if action == "fail":
            raise ScriptError(message)
        time.sleep(_POLL_S)


def _report(metrics: dict[str, Any], staged: str | None, history: ReportHistory) -> None:
    """One `ray.train.report`; rank 0 adds the checkpoint the script reported, with the report history in it
    (then drops its staged copy)."""
    if staged is None:
        ray.train.report(metrics)
        return
    folder = Path(staged)
    history.write(folder)
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
                     checkpoint_dir_name=f"step_{int(metrics['step']):08d}")
    shutil.rmtree(folder, ignore_errors=True)


def _wait_exit(proc: ScriptProcess, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    while proc.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
