"""Scratch folder ownership (trainable.scratch) with real processes, real flock locks and real SIGKILLs."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from trainable import scratch

REPO = Path(__file__).resolve().parents[2]


def owner_process(run_dir: Path, rank: int = 0) -> subprocess.Popen:
    """A process that claims `run_dir` as `rank`, writes a file into it and waits to be killed."""
    code = ("import sys, time; from pathlib import Path; from trainable import scratch; "
            f"d = Path({str(run_dir)!r}); scratch.claim(d, {rank}); (d / 'rank{rank}.log').write_text('x'); "
            "print('claimed', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_the_last_rank_to_release_removes_the_folder(tmp_path: Path) -> None:
    run = tmp_path / "t1-seed0"
    scratch.claim(run, 0)
    scratch.claim(run, 1)
    (run / "files").mkdir()
    (run / "files" / "ckpt.pt").write_bytes(b"0" * 100)
    scratch.release(run, 0)
    assert (run / "files" / "ckpt.pt").exists()  # rank 1 of this node still works in it
    scratch.release(run, 1)
    assert not run.exists()


def test_a_killed_owners_folder_is_removed_and_a_living_ones_is_not(tmp_path: Path) -> None:
    killed, alive = owner_process(tmp_path / "a-seed0"), owner_process(tmp_path / "b-seed0")
    (tmp_path / "foreign").mkdir()  # no ownership files: not ours to remove
    (tmp_path / ".trash-c-seed0-1234").mkdir()  # a cleaner killed half-way left it
    try:
        assert scratch.remove_orphans(tmp_path) == []
        assert (tmp_path / "a-seed0" / "rank0.log").exists()
        kill(killed)
        assert scratch.remove_orphans(tmp_path) == ["a-seed0"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b-seed0", "foreign"]
    finally:
        kill(alive)
    assert scratch.remove_orphans(tmp_path) == ["b-seed0"]


def test_remove_orphans_waits_for_the_named_runs_to_end(tmp_path: Path) -> None:
    proc = owner_process(tmp_path / "t7-seed1", rank=1)
    threading.Timer(1.0, kill, [proc]).start()
    start = time.monotonic()
    assert scratch.remove_orphans(tmp_path, wait_for=("t7",), wait_s=30) == ["t7-seed1"]
    assert 0.9 < time.monotonic() - start < 20
    # Not waited for when the owned folder is not one of the named runs'.
    other = owner_process(tmp_path / "t8-seed0")
    try:
        start = time.monotonic()
        assert scratch.remove_orphans(tmp_path, wait_for=("t7",), wait_s=30) == []
        assert time.monotonic() - start < 5
    finally:
        kill(other)


def test_a_failed_runs_folder_stays_until_a_new_attempt_of_it_ends_well(tmp_path: Path) -> None:
    run = tmp_path / "t2-seed0"
    proc = owner_process(run)
    scratch.mark_failed(run)
    kill(proc)
    assert scratch.remove_orphans(tmp_path) == [] and (run / "rank0.log").exists()
    scratch.claim(run, 0)  # Ray Train starts the run again
    assert not (run / scratch.FAILED_MARKER).exists()
    scratch.release(run, 0)
    assert not run.exists()


def test_a_claim_racing_a_cleaner_ends_up_owning_a_folder_that_exists(tmp_path: Path) -> None:
    """The cleaner holds the orphan's lock while it moves the folder away; a rank starting on the same run at
    that moment must not keep a lock on the moved file (its folder would then be removed under it)."""
    run = kill_owner_of(tmp_path / "t3-seed0")
    owner_file = run / scratch.OWNERS_DIR / "rank0"
    fd = os.open(owner_file, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the cleaner's lock
    claimer = threading.Thread(target=scratch.claim, args=(run, 0))
    claimer.start()
    time.sleep(0.5)
    run.rename(tmp_path / ".trash-t3")  # the cleaner moves it away, then lets go
    os.close(fd)
    claimer.join(timeout=30)
    assert not claimer.is_alive()
    assert owner_file.exists() and (tmp_path / ".trash-t3" / "rank0.log").exists()
    # This process owns the new folder: a cleaner leaves it alone.
    assert scratch.remove_orphans(tmp_path) == [] and run.exists()
    scratch.release(run, 0)
    assert not run.exists()


def kill_owner_of(run: Path) -> Path:
    kill(owner_process(run))
    return run
