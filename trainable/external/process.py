"""A launched training script as a child process: output captured to a log and a tail, idle time, and
termination of its whole process group.

The script runs in a session of its own, so terminating it also reaches the processes it started (data
loader workers, a `torchrun` it might call). Output is read by two threads, line by line: every line goes to
the log file, to the tail kept for error messages, and stdout lines to `on_stdout` (the metrics parser).
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, IO

_TAIL_LINES = 30
_READER_JOIN_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the launcher's thread ends (Linux PR_SET_PDEATHSIG).

    Ray kills a worker without running our `finally` when its run is torn down from outside (the trial's
    actor gone); the script, in a session of its own, would otherwise train on as an orphan.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux/glibc: no such guard


class ScriptProcess:
    """One running script. `exit_code()` is None while it runs *or* while its output is still being read."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path,
                 on_stdout: Callable[[str], None] | None = None):
        self.argv, self.log_path = argv, log_path
        self.on_stdout = on_stdout
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.started = self.last_output = time.monotonic()
        self._lock = threading.Lock()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "a", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], is_stderr: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._lock:
                self.last_output = time.monotonic()
                self.tail.append(line)
                if is_stderr:
                    self.stderr_tail.append(line)
                self._log.write(("[stderr] " if is_stderr else "") + line + "\n")
                self._log.flush()
            if not is_stderr and self.on_stdout is not None:
                self.on_stdout(line)

    def exit_code(self) -> int | None:
        """The exit code once the process has ended and all its output has been read; None before."""
        code = self.proc.poll()
        if code is None:
            return None
        for reader in self._readers:
            # A grandchild still holding the pipes open must not keep us waiting for ever.
            reader.join(timeout=_READER_JOIN_S)
        return code

    def idle_s(self) -> float:
        """Seconds since the last output line (or since the start)."""
        with self._lock:
            return time.monotonic() - self.last_output

    def touch(self) -> None:
        """Count a report as activity (a script may report without printing)."""
        with self._lock:
            self.last_output = time.monotonic()

    def last_lines(self, stderr_only: bool = False) -> list[str]:
        with self._lock:
            return list(self.stderr_tail if stderr_only else self.tail)

    def terminate(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the script's process group, SIGKILL after `grace_s`; returns once it has ended."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self.close()

    def close(self) -> None:
        """Reap the process group's leftovers and close the log (after the script has ended)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children the script left behind
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=_READER_JOIN_S)
        with self._lock:
            if not self._log.closed:
                self._log.close()
