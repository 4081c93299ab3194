"""The channel between a launched script (through `trainable.hook`) and its launcher: names and a reader.

The launcher tells the script where things are through environment variables (the names below); the
script's rank 0 appends one JSON object per `hook.report` to the report file. One `write` of one line
opened with O_APPEND is not interleaved with other writes on Linux, and the reader only takes complete
lines, so a report is read whole or not yet. A file (rather than a socket) also survives the launcher
looking away for a moment and leaves a record to read after a failure.

Pure Python: imported by `trainable.hook`, which must stay free of torch and ray.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_SCHEDULE = "SCHEDSWEEP_SCHEDULE"  # a preset name or the JSON of a schedule dict
ENV_HORIZON = "SCHEDSWEEP_HORIZON_STEPS"  # T, the steps the schedule is stretched over
ENV_REPORT_FILE = "SCHEDSWEEP_REPORT_FILE"  # rank 0 only: where reports go (JSON lines)
ENV_STAGE_DIR = "SCHEDSWEEP_STAGE_DIR"  # rank 0 only: where the hook snapshots reported checkpoints
ENV_RESUME_DIR = "SCHEDSWEEP_RESUME_DIR"  # the checkpoint folder to resume from, on every rank
ENV_STOP_FILE = "SCHEDSWEEP_STOP_FILE"  # exists once the sweep wants the run to end
ENV_SEED = "SCHEDSWEEP_SEED"  # the seed of this run of the group
ENV_DEVICE = "SCHEDSWEEP_DEVICE"  # this rank's torch device: "cuda:<local rank>" on a GPU worker, else "cpu"
ENV_DIST_BACKEND = "SCHEDSWEEP_DIST_BACKEND"  # the process-group backend that works there: "nccl" or "gloo"
# Every variable above: the launcher's, never the user's (`script.env` may not set them).
LAUNCHER_ENV = (ENV_SCHEDULE, ENV_HORIZON, ENV_REPORT_FILE, ENV_STAGE_DIR, ENV_RESUME_DIR, ENV_STOP_FILE, ENV_SEED,
                ENV_DEVICE, ENV_DIST_BACKEND)
# What torchrun sets, and the launcher too for two or more workers.
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")

# Keys the hook adds to every report: whether this process read the seed and the schedule through the hook
# (1.0 or 0.0). The sweep warns, and its report makes no verdict, when a script never did.
SEED_READ, SCHEDULE_READ = "seed_read", "schedule_read"


def ack_path(report_file: str | Path) -> Path:
    """Where the launcher writes how many reports it has relayed (the hook waits on it: back-pressure)."""
    return Path(str(report_file) + ".ack")


def write_ack(report_file: str | Path, count: int) -> None:
    """Record that `count` reports have reached the sweep (atomic: a reader never sees a partial number)."""
    path = ack_path(report_file)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(count))
    os.replace(tmp, path)


def read_ack(report_file: str | Path) -> int:
    """How many reports the launcher has relayed so far (0 before the first)."""
    try:
        return int(ack_path(report_file).read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one report line (one write call, so concurrent readers never see half of it)."""
    line = json.dumps(record, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


class ReportReader:
    """Reads the report file incrementally: every call returns the complete lines added since the last."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0

    def read_new(self) -> list[dict[str, Any]]:
        """The records appended since the previous call (a trailing partial line waits for the next call)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[: end + 1].splitlines():
            if raw.strip():
                out.append(json.loads(raw.decode("utf-8")))
        return out
