"""sqlite's write-ahead log for the sweep's own sqlite stores (MLflow's and Optuna's), where it is safe.

A sweep writes to its sqlite stores from Tune's driver loop, one small transaction per run per result. In
sqlite's default rollback-journal mode each commit creates, syncs and deletes a journal file beside the
database; in write-ahead-log (WAL) mode it appends to one log instead. Measured on the MLflow callback's
writes (`benchmarks/mlflow_log_batch.py`, BENCHMARKS.md) that takes a `log_batch` from ~8.5 to ~5.3 ms. WAL
also lets readers (`mlflow ui`, `sweep report`, the dashboard) read while the driver writes.

The mode is kept in the database file, so setting it once, from here, holds for MLflow's and Optuna's own
connections; neither library has an option for it. WAL needs shared memory between the processes that open
the file, which network file systems (NFS, SMB, FUSE mounts) do not give reliably: there the file keeps its
default mode. So do files on a file system this module cannot identify.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

logger = logging.getLogger(__name__)

# File systems where every process that opens the database shares this kernel's page cache and locks.
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "overlay", "jfs",
                                "reiserfs", "bcachefs", "apfs", "hfs"})


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL (None for any other URL or an in-memory database)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def file_system_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the file system `path` lives on, from the longest mount point above it; None if unknown."""
    try:
        table = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in table:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


def use_write_ahead_log(url: str) -> bool:
    """Switch the sqlite database at `url` to WAL mode if it exists on a local file system; True when it is in
    WAL mode afterwards. Anything else (not sqlite, a network file system, an error) leaves it as it is."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return False
    fs = file_system_type(path)
    if fs not in LOCAL_FILE_SYSTEMS:
        logger.debug("%s is on %s: sqlite keeps its rollback journal", path, fs or "an unknown file system")
        return False
    try:
        with closing(sqlite3.connect(path, timeout=10)) as db:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error:
        logger.warning("could not switch %s to sqlite's write-ahead log; it keeps its journal", path, exc_info=True)
        return False
    return str(mode).lower() == "wal"
