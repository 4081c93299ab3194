"""What Ray prints on the driver behind `log_to_driver=False`: the raylet's and GCS's warnings.

`ray.init(log_to_driver=False)` keeps the workers' output off the terminal, but the driver still has a thread
(`ray_listen_error_messages`) that prints every message the cluster pushes to it with `print()`: "14 PYTHON
worker processes have been started ... 7x the maximum expected startup concurrency", 500-700 characters
each, four times in a 10-minute demo on 2 cores, and once more after the sweep's closing summary. Ray has no
switch for it. `route_ray_prints(path)` puts a thin stand-in in front of sys.stdout and sys.stderr that sends
what that one thread writes to `path` and passes everything else through untouched, unbuffered (the sweep's
own lines, rich's live view). Keyed on the thread, not on the text: should Ray rename the thread, its
messages show on the terminal again, nothing of ours is ever hidden.

The stand-ins stay for the life of the process, since the thread does (a later sweep in the same process
retargets them to its own log), so a warning Ray pushes after the sweep still lands in the sweep's log.

One path bypasses that thread. Ray deduplicates the raylet's messages: a second "N PYTHON worker processes"
warning within 5 s is held back, and whatever is still held when the driver disconnects is printed by the
thread that calls `ray.shutdown()` (Ray's atexit handler, on the main thread), after the sweep's closing
summary. `shutdown_ray_routed()` runs that shutdown with the calling thread routed too; `init_ray` registers
it to run at exit ahead of Ray's own handler.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from typing import Any, Iterator, TextIO

# The name Ray 2.60 gives the driver's thread that prints pushed error messages (ray._private.worker).
RAY_PRINT_THREAD = "ray_listen_error_messages"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ROUTED_HERE = threading.local()  # `.on`: this thread's writes are routed too (see `routing_this_thread`)


class _RayPrintsToFile:
    """Stands in for a text stream: the Ray print thread's lines go to a file, the rest to the stream."""

    def __init__(self, stream: TextIO, path: str):
        self._stream, self.path = stream, path
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if threading.current_thread().name != RAY_PRINT_THREAD and not getattr(_ROUTED_HERE, "on", False):
            return self._stream.write(text)
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            if lines:
                self._to_log([line for line in lines if line.strip()])
        return len(text)

    def _to_log(self, lines: list[str]) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.writelines(f"{stamp} RAY ray.driver: {_ANSI.sub('', line)}\n" for line in lines)
        except OSError:
            # The log's folder is gone (a sweep started again with --overwrite, a caller's temp folder). An error
            # raised here would end Ray's thread, and with it every later message: show them instead.
            self._stream.writelines(f"{line}\n" for line in lines)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer ... of the real stream
        return getattr(self._stream, name)


def route_ray_prints(path: str) -> None:
    """Send what Ray's print thread writes to sys.stdout and sys.stderr to `path` from now on."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _RayPrintsToFile):
            stream.path = path
        else:
            setattr(sys, name, _RayPrintsToFile(stream, path))


@contextlib.contextmanager
def routing_this_thread() -> Iterator[None]:
    """While the block runs, what this thread writes to the routed streams goes to the log as well."""
    _ROUTED_HERE.on = True
    try:
        yield
    finally:
        _ROUTED_HERE.on = False


def shutdown_ray_routed() -> None:
    """`ray.shutdown()` with what it prints routed: the raylet warnings Ray's deduplicator still holds are
    printed by the thread that disconnects (module docstring)."""
    import ray

    if ray.is_initialized():
        with routing_this_thread():
            ray.shutdown()
