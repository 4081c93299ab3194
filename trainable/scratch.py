"""Who owns a seed run's node-local scratch folder, and removing the folders nobody owns any more.

A seed run's ranks write logs, reports, the script's own files and staged checkpoints into
`<scratch root>/<run name>/` on their node. A run that ends as it should removes its folder itself. A run
whose processes are killed cannot: ASHA stopping a group ends the group's Tune actor, and with it the seed
runs' Ray Train actors, before any `finally` of theirs runs; a killed driver or node does the same. Such
folders piled up (44 MB for one small sweep of a script, 110 MB of the built-in trainer's checkpoints here).

Ownership is an advisory lock (`flock`) on `<run>/.owners/rank<r>`, taken when a rank starts and held until
its process exits, however it exits: the kernel drops the lock of a killed process. A folder whose lock files
can all be locked by someone else therefore has no living owner, and `remove_orphans` removes it, unless its
run failed (`mark_failed`): the error names the logs in it, so it stays for the user.

`remove_orphans` runs when a seed run starts on a node and on every node when a sweep ends. It moves a folder
away (a rename, while it holds every lock) before removing it, so a rank that starts on that folder at the
same moment either sees it whole or makes a new one (`claim` checks that the file it locked is still there).
The scratch root must be node-local (locks on network filesystems are unreliable): it is by default.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path

OWNERS_DIR = ".owners"
FAILED_MARKER = "FAILED"
_TRASH_PREFIX = ".trash-"
_CLAIM_WAIT_S = 60.0

# Lock files this process holds, by path: flock locks belong to one open file, so a second open of the same
# path in this process would conflict with the first.
_held: dict[str, int] = {}


def _owner_file(run_dir: Path, rank: int) -> Path:
    return run_dir / OWNERS_DIR / f"rank{rank}"


def claim(run_dir: Path, rank: int) -> None:
    """Make `run_dir` (created if missing) owned by this process as `rank` until it exits or `release`s it.

    Call it before writing anything into the folder. It waits (up to a minute) while an earlier process of
    the same run and rank is still exiting, then goes on without the lock: once that process has ended, a
    cleaner may then take the folder away under this one (its files were scratch, but the run may fail)."""
    path = _owner_file(run_dir, rank)
    if str(path) in _held:
        return
    deadline = time.monotonic() + _CLAIM_WAIT_S
    while time.monotonic() < deadline:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # the folder was moved away between the mkdir and the open: make it again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            time.sleep(0.2)
            continue
        # Locked; but a cleaner may have moved the folder away (with this file) while we waited for it.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                _held[str(path)] = fd
                (run_dir / FAILED_MARKER).unlink(missing_ok=True)  # an earlier attempt's failure is over
                return
        os.close(fd)


def mark_failed(run_dir: Path) -> None:
    """Keep `run_dir` for the user: the run failed and its error names the logs in the folder."""
    with contextlib.suppress(OSError):
        (run_dir / FAILED_MARKER).touch()


def release(run_dir: Path, rank: int) -> None:
    """This rank is done with `run_dir`: drop its lock, and remove the folder once no rank on the node holds
    it (the last rank to finish removes it). A folder marked failed stays."""
    path = _owner_file(run_dir, rank)
    fd = _held.pop(str(path), None)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # before the close: whoever waits on this lock then sees the file gone and makes a new one
    if fd is not None:
        os.close(fd)
    try:
        path.parent.rmdir()  # fails while another rank of this node still owns the folder
    except OSError:
        return
    if not (run_dir / FAILED_MARKER).exists():
        shutil.rmtree(run_dir, ignore_errors=True)


def _lock_all(files: list[Path]) -> list[int] | None:
    """Lock every file without waiting; the open descriptors, or None (all closed) if any is held."""
    fds: list[int] = []
    try:
        for f in files:
            fd = os.open(f, os.O_RDWR)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fds
    except (BlockingIOError, FileNotFoundError):
        for fd in fds:
            os.close(fd)
        return None


def remove_orphans(root: str | Path, wait_for: tuple[str, ...] = (), wait_s: float = 0.0) -> list[str]:
    """Remove the run folders under `root` that no living process owns and whose run did not fail; returns
    their names. Folders without ownership files (made by another tool or an older version) are left alone.

    `wait_for`: run-name prefixes (a sweep's trial ids) whose folders are still owned by processes that are
    ending; wait up to `wait_s` seconds for them to end, removing each folder once it is orphaned."""
    root = Path(root)
    removed: list[str] = []
    deadline = time.monotonic() + wait_s
    while True:
        still_owned = []
        for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
            if run_dir.name.startswith(_TRASH_PREFIX):
                shutil.rmtree(run_dir, ignore_errors=True)  # a cleaner killed half-way left it
                continue
            owners = run_dir / OWNERS_DIR
            if not owners.is_dir() or (run_dir / FAILED_MARKER).exists():
                continue
            fds = _lock_all(sorted(owners.iterdir()))
            if fds is None:
                still_owned.append(run_dir.name)
                continue
            trash = root / f"{_TRASH_PREFIX}{run_dir.name}-{uuid.uuid4().hex[:8]}"
            try:
                run_dir.rename(trash)
            except OSError:
                continue
            finally:
                for fd in fds:
                    os.close(fd)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(run_dir.name)
        waiting = [n for n in still_owned if n.startswith(wait_for)] if wait_for else []
        if not waiting or time.monotonic() >= deadline:
            return removed
        time.sleep(0.25)
