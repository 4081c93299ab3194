"""Wall-clock marks of a run's start-up, for the start-up and wrapper-overhead benchmarks.

Off unless `SCHEDSWEEP_STARTUP_TRACE` names a folder. Then every process that calls `mark` appends one JSON
line per event to `<folder>/<pid>.jsonl`: the event's name, `time.time()`, the process's own start time
(so the cost of starting the process and importing is visible too), the CPU time the process has used so
far (every thread; what a 2-core machine has to share out) and what the caller adds (the seed run's
name, the rank, a step). Every process on a machine shares one clock, so the lines of the driver, a Tune
trial and a Train worker line up. Ray's raylet inherits the environment of the driver that starts it, so
setting the variable before `sweep run` reaches every worker of a local cluster.

A mark costs one `os.environ` lookup when tracing is off. The trainer calls it a handful of times at start,
once at its first optimizer step and once per eval, never per step.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV_VAR = "SCHEDSWEEP_STARTUP_TRACE"


@lru_cache(maxsize=1)
def _process_started() -> float | None:
    """This process's start as a Unix time (Linux: /proc), or None where that cannot be read."""
    try:
        # Field 22 of /proc/self/stat is the start in clock ticks after boot; the command name (field 2) may
        # hold spaces, so count from its closing parenthesis. /proc/uptime gives "after boot" now to 10 ms
        # (/proc/stat's boot time is whole seconds, too coarse for stages of a few seconds).
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        now, uptime = time.time(), float(Path("/proc/uptime").read_text().split()[0])
        return now - (uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return None


def mark(event: str, **fields: Any) -> None:
    """Record `event` now, if tracing is on. Never raises: a benchmark's trace must not fail a run."""
    folder = os.environ.get(ENV_VAR)
    if not folder:
        return
    line = {"event": event, "t": time.time(), "pid": os.getpid(), "process_started": _process_started(),
            "cpu_s": time.process_time(), **fields}
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as out:
            out.write(json.dumps(line, default=str) + "\n")
    except OSError:
        pass


def read(folder: str | Path) -> list[dict[str, Any]]:
    """Every mark under `folder`, oldest first."""
    rows = []
    for path in Path(folder).glob("*.jsonl"):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return sorted(rows, key=lambda row: row["t"])
